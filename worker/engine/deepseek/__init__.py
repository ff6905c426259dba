"""The DeepSeek-OCR engine: page pixels in, markdown, layout blocks and figure crops out."""
