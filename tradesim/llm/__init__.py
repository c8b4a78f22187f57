"""Language models: backends behind one interface, a content-addressed decision cache.

Specs: `hf:<hub id or local dir>` (transformers), `openai:<base url>#<model>` (any
OpenAI-compatible server), `minilm` (the offline default that ships with the install).
"""

from tradesim.llm.cache import DecisionCache
from tradesim.llm.model import LanguageModel, load_model

__all__ = ["DecisionCache", "LanguageModel", "load_model"]
