"""The teacher: any OpenAI-compatible chat endpoint (closed API, vLLM, llama.cpp's server) as a ``Generator``.

    config.py     TeacherConfig (a config file's ``teacher:`` section)
    calls.py      the interface of the parts: a generator made of calls (Call, CallGenerator, Wrapper)
    endpoint.py   EndpointClient: base URLs in turn, parallel requests, retries, cancellation, usage
    cache.py      the SQLite cache of calls and CachedGenerator (a rerun never pays twice)
    budget.py     Budget (tokens and/or USD) and BudgetExceeded
    ledger.py     tokens and cost per stage
    load.py       load_teacher: server (``iterkd.models.server``) + client + cache + budget

Importing this package is cheap: the ``openai`` package is imported when a client is built.
"""

from iterkd.teacher.budget import Budget, BudgetExceeded
from iterkd.teacher.cache import CachedGenerator
from iterkd.teacher.config import DEFAULT_TEACHER, TeacherConfig
from iterkd.teacher.endpoint import EndpointClient, TeacherRequestError
from iterkd.teacher.ledger import Ledger, Usage
from iterkd.teacher.load import load_teacher

__all__ = [
    "DEFAULT_TEACHER",
    "Budget",
    "BudgetExceeded",
    "CachedGenerator",
    "EndpointClient",
    "Ledger",
    "TeacherConfig",
    "TeacherRequestError",
    "Usage",
    "load_teacher",
]
