"""Tiny random language models, built and saved by the tests themselves (no downloads)."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "You are a trading assistant. Read the last five sessions and answer with one word.",
    "Optimistic Pessimistic Optimism Pessimism Rise Fall Up Down Yes No Answer: outlook next session",
    "date open high low close volume headlines no news MSFT AAPL 2015-06-30 123.45 +1.2% -0.8%",
    "Microsoft beats estimates; Apple shares fall after guidance. Analysts upgrade the stock.",
    "0 1 2 3 4 5 6 7 8 9 . , : ; % $ - + ( ) [ ] system user assistant",
]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tokenizer(chat: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def _save_tiny(directory: Path, seed: int, chat: bool, config_class, model_class, **shape) -> Path:
    """A randomly initialised causal LM with the test tokenizer, saved as `from_pretrained` expects."""
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(chat=chat)
    config = config_class(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shape,
    )
    model_class(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_llama(directory: Path, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    return _save_tiny(
        directory, seed, True, LlamaConfig, LlamaForCausalLM,
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512,
    )


def save_tiny_gpt2(directory: Path, seed: int = 0) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    return _save_tiny(directory, seed, False, GPT2Config, GPT2LMHeadModel, n_embd=64, n_layer=2, n_head=4, n_positions=512)
