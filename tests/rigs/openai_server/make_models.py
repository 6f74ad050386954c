"""Build the rig's two tiny random-weight models from the edge demo tokenizer (nothing downloaded).

Run by the rig's own venv: `python make_models.py TOKENIZER_DIR OUT_DIR` writes OUT_DIR/tiny-phi3 (a
text-only Phi-3 causal LM) and OUT_DIR/tiny-llava (CLIP 56 px / patch 14 = 16 image tokens + Llama), both
with the demo tokenizer and a chat template, so `transformers serve` answers like a real server would.
"""

import re
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoTokenizer,
    CLIPVisionConfig,
    GenerationConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    Phi3Config,
    Phi3ForCausalLM,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

VLM_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<|image|>' }}{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def _words_only(tok, lm_head: torch.nn.Linear) -> None:
    """Zero every output row but plain-letter tokens: greedy decoding then always picks a word piece.

    Random weights otherwise wander into byte-fallback tokens, and the server's streaming detokenizer
    fails mid-stream on them ("Invalid prefix encountered while decoding stream"); long generations
    (the watchdog's mid-stream stall test) need an answer that streams for as long as asked.
    """
    words = [
        i for i in range(len(tok)) if re.fullmatch(r"\u2581?[A-Za-z]{2,}", tok.convert_ids_to_tokens(i) or "")
    ]
    assert len(words) >= 20, f"only {len(words)} word tokens in the tokenizer"
    keep = torch.zeros(lm_head.weight.shape[0], 1)
    keep[words] = 1.0
    with torch.no_grad():
        lm_head.weight.mul_(keep)


def _generation_config(tok, end_id: int) -> GenerationConfig:
    return GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=[tok.eos_token_id, end_id],
        pad_token_id=tok.pad_token_id,
        do_sample=False,
        max_new_tokens=64,
    )


def text_model(src: Path, dst: Path) -> None:
    tok = AutoTokenizer.from_pretrained(src)
    assert tok.chat_template, "the demo tokenizer has no chat template"
    end_id = tok.convert_tokens_to_ids("<|end|>")
    torch.manual_seed(0)
    cfg = Phi3Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id, end_id],
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    model = Phi3ForCausalLM(cfg).eval()
    _words_only(tok, model.lm_head)
    model.generation_config = _generation_config(tok, end_id)
    model.save_pretrained(dst)
    tok.save_pretrained(dst)


def vision_model(src: Path, dst: Path) -> None:
    tok = AutoTokenizer.from_pretrained(src)
    end_id = tok.convert_tokens_to_ids("<|end|>")
    img_id = tok.convert_tokens_to_ids("<|image|>")
    tok.chat_template = VLM_TEMPLATE
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=56, patch_size=14, projection_dim=32)  # fmt: skip
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id, end_id], pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=img_id,
                      vision_feature_select_strategy="default", vision_feature_layer=-1)  # fmt: skip
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg).eval()
    _words_only(tok, model.lm_head)
    model.generation_config = _generation_config(tok, end_id)
    # The PIL image processor: PyPI's torchvision does not load beside CPU torch.
    ip = CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                          chat_template=VLM_TEMPLATE, image_token="<|image|>", num_additional_image_tokens=1)  # fmt: skip
    model.save_pretrained(dst)
    proc.save_pretrained(dst)
    # Smoke test through the processor, as the server uses it: fail here, not in a test.
    img = Image.fromarray(np.full((48, 64, 3), 120, np.uint8))
    msgs = [
        {"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": "Describe."}]}
    ]
    inputs = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True,
                                      return_tensors="pt")  # fmt: skip
    model.generate(**inputs, max_new_tokens=2, do_sample=False)


if __name__ == "__main__":
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    text_model(src, out / "tiny-phi3")
    vision_model(src, out / "tiny-llava")
