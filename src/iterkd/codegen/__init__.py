"""Code generation text: the prompts (one version per family, see ``prompts.PROMPT_VERSIONS``) and the
sanitiser that turns a chat answer into a program (evalplus's split: generation, sanitising, evaluation)."""

from iterkd.codegen.prompts import PROMPT_VERSION, PROMPT_VERSIONS, build_messages, refine_messages
from iterkd.codegen.sanitize import extract_code, sanitize

__all__ = ["PROMPT_VERSION", "PROMPT_VERSIONS", "build_messages", "extract_code", "refine_messages", "sanitize"]
