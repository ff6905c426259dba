"""OCR engines. Only this package imports torch and transformers."""
