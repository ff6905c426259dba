"""The DeepSeek-OCR architecture as a published ``config.json`` describes it, and the serving config.

Both served families publish the same config form (DeepSeek-OCR: ``model_type deepseek_vl_v2``;
Unlimited-OCR: ``model_type unlimited-ocr`` plus its attention window): vision widths under
``vision_config.width``, the decoder under ``language_config``. transformers 5.23 serves the
network as ``unlimited_ocr``; :meth:`DeepSeekOcrArchitecture.serving_config` translates one into
the other and sets the decoder's attention from the family's profile (full attention for
DeepSeek-OCR, whose translation would otherwise silently get a 128-token window; the published
reference window for Unlimited-OCR). :meth:`DeepSeekOcrArchitecture.from_config` identifies the
family and refuses configs that ask for anything ``unlimited_ocr`` cannot compute (MLA attention,
renormalised or sigmoid routing, RoPE scaling) instead of serving them with different maths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from scriptorium.model_families import ModelFamily
from scriptorium.modes import PATCH_SIZE
from worker.engine.deepseek.special_tokens import BOS, EOS, IMAGE
from worker.engine.profiles import ModelProfile, UnknownCheckpoint, identify_checkpoint, profile_of

if TYPE_CHECKING:
    from transformers import UnlimitedOcrConfig

SAM_KEY = "sam_vit_b"
CLIP_KEY = "clip-l-14-224"
SAM_IMAGE_SIZE = 1024  # SAM's absolute position table covers a 1024 px view (64 x 64 patches)
MIN_ATTENTION_WINDOW = 8192  # DeepSeek-OCR's training context: its window must cover at least this
FULL_ATTENTION = "full_attention"
REFERENCE_SLIDING_ATTENTION = "reference_sliding_attention"
_WINDOW_KEYS = ("sliding_window", "sliding_window_size")


class UnsupportedConfig(ValueError):
    """The config is not DeepSeek-OCR, or asks for maths the serving classes do not implement."""


@dataclass(frozen=True)
class SamArchitecture:
    width: int = 768
    layers: int = 12
    heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    downsample_channels: tuple[int, int] = (512, 1024)
    mlp_dim: int = 3072
    neck_channels: int = 256
    window_size: int = 14


@dataclass(frozen=True)
class ClipArchitecture:
    width: int = 1024
    layers: int = 24
    heads: int = 16
    intermediate_size: int = 4096
    image_size: int = 224
    patch_size: int = 14


@dataclass(frozen=True)
class DecoderArchitecture:
    vocab_size: int = 129280
    hidden_size: int = 1280
    intermediate_size: int = 6848
    num_hidden_layers: int = 12
    num_attention_heads: int = 10
    num_key_value_heads: int = 10
    max_position_embeddings: int = 8192
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    first_k_dense_replace: int = 1
    n_routed_experts: int = 64
    n_shared_experts: int = 2
    num_experts_per_tok: int = 6
    moe_intermediate_size: int = 896
    routed_scaling_factor: float = 1.0
    n_group: int = 1
    topk_group: int = 1
    tie_word_embeddings: bool = False


@dataclass(frozen=True)
class DeepSeekOcrArchitecture:
    """Everything about the network's shape that the checkpoint's config.json decides."""

    sam: SamArchitecture = SamArchitecture()
    clip: ClipArchitecture = ClipArchitecture()
    decoder: DecoderArchitecture = DecoderArchitecture()
    family: ModelFamily = ModelFamily.DEEPSEEK_OCR

    @property
    def profile(self) -> ModelProfile:
        return profile_of(self.family)

    @property
    def projector_input_dim(self) -> int:
        return self.sam.downsample_channels[-1] + self.clip.width

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DeepSeekOcrArchitecture:
        """Read a config.json in the published form of DeepSeek-OCR or Unlimited-OCR."""
        try:
            profile = identify_checkpoint(config)
        except UnknownCheckpoint as error:
            raise UnsupportedConfig(str(error)) from error
        language = _section(config, "language_config")
        decoder = _decoder_from(language, config)
        _check_attention_window(config, language, profile)
        sam, clip = _vision_from(_section(config, "vision_config"))
        architecture = cls(sam=sam, clip=clip, decoder=decoder, family=profile.family)
        _check_projector(_section(config, "projector_config"), architecture)
        return architecture

    def to_config(self) -> dict[str, Any]:
        """A config.json in the published form of this architecture's family."""
        decoder = self.decoder
        window = self.profile.attention_window
        language = {
            "architectures": ["DeepseekV2ForCausalLM"],
            "bos_token_id": BOS.id,
            "eos_token_id": EOS.id,
            "first_k_dense_replace": decoder.first_k_dense_replace,
            "hidden_size": decoder.hidden_size,
            "intermediate_size": decoder.intermediate_size,
            "kv_lora_rank": None,
            "lm_head": True,
            "max_position_embeddings": decoder.max_position_embeddings,
            "moe_intermediate_size": decoder.moe_intermediate_size,
            "n_group": decoder.n_group,
            "n_routed_experts": decoder.n_routed_experts,
            "n_shared_experts": decoder.n_shared_experts,
            "num_attention_heads": decoder.num_attention_heads,
            "num_experts_per_tok": decoder.num_experts_per_tok,
            "num_hidden_layers": decoder.num_hidden_layers,
            "num_key_value_heads": decoder.num_key_value_heads,
            "q_lora_rank": None,
            "qk_nope_head_dim": 0,
            "qk_rope_head_dim": 0,
            "rm_head": False,
            "topk_group": decoder.topk_group,
            "topk_method": "greedy",
            "torch_dtype": "bfloat16",
            "use_mla": False,
            "v_head_dim": 0,
            "vocab_size": decoder.vocab_size,
        }
        if window is not None:
            language.update(
                architectures=["DeepseekOCRForCausalLM"],
                v_head_dim=decoder.hidden_size // decoder.num_attention_heads,
            )
            language["sliding_window_size"] = window
        top_level_decoder = {key: value for key, value in language.items() if key not in ("architectures",)}
        sam, clip = self.sam, self.clip
        return {
            **top_level_decoder,
            **_family_header(self.family, window),
            "attention_bias": False,
            "candidate_resolutions": [[1024, 1024]],
            "global_view_pos": "head",
            "hidden_act": "silu",
            "language_config": language,
            "moe_layer_freq": 1,
            "norm_topk_prob": False,
            "projector_config": {
                "input_dim": self.projector_input_dim,
                "model_type": "mlp_projector",
                "n_embed": decoder.hidden_size,
                "projector_type": "linear",
            },
            "rms_norm_eps": decoder.rms_norm_eps,
            "rope_scaling": None,
            "rope_theta": decoder.rope_theta,
            "routed_scaling_factor": decoder.routed_scaling_factor,
            "scoring_func": "softmax",
            "tie_word_embeddings": decoder.tie_word_embeddings,
            "tile_tag": "2D",
            "torch_dtype": "bfloat16",
            "use_cache": True,
            "vision_config": {
                "image_size": SAM_IMAGE_SIZE,
                "model_name": "deeplip_b_l",
                "model_type": "vision",
                "width": {
                    CLIP_KEY: {
                        "heads": clip.heads,
                        "image_size": clip.image_size,
                        "layers": clip.layers,
                        "patch_size": clip.patch_size,
                        "width": clip.width,
                        "intermediate_size": clip.intermediate_size,
                    },
                    SAM_KEY: {
                        "downsample_channels": list(sam.downsample_channels),
                        "global_attn_indexes": list(sam.global_attn_indexes),
                        "heads": sam.heads,
                        "layers": sam.layers,
                        "width": sam.width,
                        "mlp_dim": sam.mlp_dim,
                        "neck_channels": sam.neck_channels,
                        "window_size": sam.window_size,
                    },
                },
            },
        }

    def serving_config(self, *, max_context: int) -> UnlimitedOcrConfig:
        """The transformers ``unlimited_ocr`` config that computes exactly this network.

        DeepSeek-OCR: every decoder layer is declared full attention and the reference-sliding
        window is set to at least the context, because the class default of 128 silently changes
        the attention after 128 generated tokens. Unlimited-OCR: every layer is reference
        sliding-window attention with the family's published window.
        """
        from transformers import UnlimitedOcrConfig

        decoder = self.decoder
        layers = decoder.num_hidden_layers
        window = self.profile.attention_window
        if window is None:
            layer_type, sliding_window = FULL_ATTENTION, max(MIN_ATTENTION_WINDOW, max_context)
        else:
            layer_type, sliding_window = REFERENCE_SLIDING_ATTENTION, window
        text_config = {
            **{key: value for key, value in asdict(decoder).items() if key not in _NOT_TEXT_CONFIG_KEYS},
            "rope_parameters": {"rope_type": "default", "rope_theta": decoder.rope_theta},
            "mlp_layer_types": [
                "dense" if index < decoder.first_k_dense_replace else "sparse" for index in range(layers)
            ],
            "layer_types": [layer_type] * layers,
            "sliding_window": sliding_window,
            "attention_bias": False,
            "mlp_bias": False,
            "bos_token_id": BOS.id,
            "eos_token_id": EOS.id,
        }
        sam, clip = self.sam, self.clip
        vision_config = {
            "sam_config": {
                "hidden_size": sam.width,
                "num_hidden_layers": sam.layers,
                "num_attention_heads": sam.heads,
                "mlp_dim": sam.mlp_dim,
                "output_channels": sam.neck_channels,
                "downsample_channels": list(sam.downsample_channels),
                "global_attn_indexes": list(sam.global_attn_indexes),
                "window_size": sam.window_size,
                "image_size": SAM_IMAGE_SIZE,
                "patch_size": PATCH_SIZE,
            },
            "encoder_config": {
                "hidden_size": clip.width,
                "intermediate_size": clip.intermediate_size,
                "num_hidden_layers": clip.layers,
                "num_attention_heads": clip.heads,
                "image_size": clip.image_size,
                "patch_size": clip.patch_size,
            },
        }
        return UnlimitedOcrConfig(
            vision_config=vision_config,
            text_config=text_config,
            image_token_id=IMAGE.id,
            tie_word_embeddings=decoder.tie_word_embeddings,
        )


_NOT_TEXT_CONFIG_KEYS = frozenset({"rope_theta", "first_k_dense_replace"})


def _family_header(family: ModelFamily, window: int | None) -> dict[str, Any]:
    if family is ModelFamily.UNLIMITED_OCR:
        return {
            "architectures": ["UnlimitedOCRForCausalLM"],
            "auto_map": {
                "AutoConfig": "modeling_unlimitedocr.UnlimitedOCRConfig",
                "AutoModel": "modeling_unlimitedocr.UnlimitedOCRForCausalLM",
            },
            "model_type": "unlimited-ocr",
            "sliding_window": window,
            "sliding_window_size": window,
        }
    return {"architectures": ["DeepseekOCRForCausalLM"], "model_type": "deepseek_vl_v2"}


def _check_attention_window(
    config: Mapping[str, Any], language: Mapping[str, Any], profile: ModelProfile
) -> None:
    """A checkpoint declaring another attention window than its family publishes is not that model."""
    declared = {
        f"{where}{key}": value
        for where, section in (("", config), ("language_config.", language))
        for key in _WINDOW_KEYS
        if (value := section.get(key)) is not None
    }
    if profile.attention_window is None:
        return  # DeepSeek-OCR declares no window; it is served with full attention
    wrong = {key: value for key, value in declared.items() if value != profile.attention_window}
    if wrong:
        details = ", ".join(f"{key}={value!r}" for key, value in wrong.items())
        raise UnsupportedConfig(
            f"config.json declares {details}; {profile.title} as published attends to a "
            f"{profile.attention_window}-token window of generated tokens"
        )


def _section(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    section = config.get(key)
    if not isinstance(section, Mapping):
        raise UnsupportedConfig(f"config.json has no {key!r} object")
    return section


def _decoder_from(language: Mapping[str, Any], top: Mapping[str, Any]) -> DecoderArchitecture:
    def value(key: str, default: Any) -> Any:
        if key in language:
            return language[key]
        return top.get(key, default)

    refusals = {
        "use_mla": (value("use_mla", False), False),
        "kv_lora_rank": (value("kv_lora_rank", None), None),
        "q_lora_rank": (value("q_lora_rank", None), None),
        "topk_method": (value("topk_method", "greedy"), "greedy"),
        "scoring_func": (value("scoring_func", "softmax"), "softmax"),
        "norm_topk_prob": (value("norm_topk_prob", False), False),
        "rope_scaling": (value("rope_scaling", None), None),
        "moe_layer_freq": (value("moe_layer_freq", 1), 1),
        "attention_bias": (value("attention_bias", False), False),
    }
    for key, (found, supported) in refusals.items():
        if found != supported:
            raise UnsupportedConfig(
                f"language_config {key}={found!r} is not supported (DeepSeek-OCR uses {supported!r})"
            )
    defaults = DecoderArchitecture()
    fields = {name: value(name, getattr(defaults, name)) for name in asdict(defaults)}
    try:
        return DecoderArchitecture(
            **{name: type(getattr(defaults, name))(found) for name, found in fields.items()}
        )
    except (TypeError, ValueError) as error:
        raise UnsupportedConfig(f"language_config has an invalid value: {error}") from error


def _vision_from(vision: Mapping[str, Any]) -> tuple[SamArchitecture, ClipArchitecture]:
    widths = vision.get("width")
    if not isinstance(widths, Mapping) or SAM_KEY not in widths or CLIP_KEY not in widths:
        raise UnsupportedConfig(f"vision_config.width must describe {SAM_KEY!r} and {CLIP_KEY!r}")
    sam_entry, clip_entry = widths[SAM_KEY], widths[CLIP_KEY]
    try:
        sam_width = int(sam_entry["width"])
        downsample = tuple(int(channels) for channels in sam_entry["downsample_channels"])
        sam = SamArchitecture(
            width=sam_width,
            layers=int(sam_entry["layers"]),
            heads=int(sam_entry["heads"]),
            global_attn_indexes=tuple(int(index) for index in sam_entry["global_attn_indexes"]),
            downsample_channels=(downsample[0], downsample[1]),
            mlp_dim=int(sam_entry.get("mlp_dim", 4 * sam_width)),
            neck_channels=int(sam_entry.get("neck_channels", 256)),
            window_size=int(sam_entry.get("window_size", 14)),
        )
        clip_width = int(clip_entry["width"])
        clip = ClipArchitecture(
            width=clip_width,
            layers=int(clip_entry["layers"]),
            heads=int(clip_entry["heads"]),
            intermediate_size=int(clip_entry.get("intermediate_size", 4 * clip_width)),
            image_size=int(clip_entry["image_size"]),
            patch_size=int(clip_entry["patch_size"]),
        )
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise UnsupportedConfig(f"vision_config.width is incomplete or invalid: {error!r}") from error
    if int(vision.get("image_size", SAM_IMAGE_SIZE)) != SAM_IMAGE_SIZE:
        raise UnsupportedConfig(f"vision_config.image_size must be {SAM_IMAGE_SIZE}")
    if clip.width != sam.downsample_channels[-1]:
        raise UnsupportedConfig(
            f"CLIP width {clip.width} must equal SAM's last downsample channels {sam.downsample_channels[-1]}"
        )
    return sam, clip


def _check_projector(projector: Mapping[str, Any], architecture: DeepSeekOcrArchitecture) -> None:
    if projector.get("projector_type", "linear") != "linear":
        raise UnsupportedConfig(
            f"projector_type {projector.get('projector_type')!r} is not supported (linear)"
        )
    expected = {"input_dim": architecture.projector_input_dim, "n_embed": architecture.decoder.hidden_size}
    for key, size in expected.items():
        if key in projector and int(projector[key]) != size:
            raise UnsupportedConfig(
                f"projector_config.{key}={projector[key]} does not match the encoder ({size})"
            )
