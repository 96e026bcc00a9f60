"""The teacher: any OpenAI-compatible chat endpoint (closed API, vLLM, llama.cpp's server) as a ``Generator``.

    config.py   TeacherConfig (a config file's ``teacher:`` section)
    client.py   OpenAIChatGenerator: parallel requests, retries, the cache, the ledger; ``load_teacher``
    ledger.py   tokens and cost per stage, the budgets (``BudgetExceeded``; ``TokenBudget`` for IterKD)
    cache.py    the SQLite cache of calls (a rerun never pays twice)

Importing this package is cheap: the ``openai`` package is imported when a client is built.
"""

from iterkd.teacher.client import OpenAIChatGenerator, TeacherRequestError, load_teacher
from iterkd.teacher.config import DEFAULT_TEACHER, TeacherConfig
from iterkd.teacher.ledger import BudgetExceeded, Ledger, TokenBudget, TokenBudgetReached, Usage

__all__ = [
    "DEFAULT_TEACHER",
    "BudgetExceeded",
    "Ledger",
    "OpenAIChatGenerator",
    "TeacherConfig",
    "TeacherRequestError",
    "TokenBudget",
    "TokenBudgetReached",
    "Usage",
    "load_teacher",
]
