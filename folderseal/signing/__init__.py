"""The embedded local signer: PAdES for PDFs, detached CAdES for everything else.

Load a :class:`Credentials` once, then call :func:`sign_pdf` or :func:`sign_detached` per file;
:func:`verify_pdf` and :func:`verify_detached` check the results without trusting
anything, :func:`signer_of` reads back who signed an output, and
:func:`make_trial_seal` writes a self-signed seal to start with.

Each name is imported from its module when first asked for: pyHanko takes about half a
second to import, and commands that never sign (``status``, ``check`` of a seal) should
not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cades import DetachedSignature as DetachedSignature
    from .cades import sign_detached as sign_detached
    from .credentials import Credentials as Credentials
    from .credentials import CredentialsError as CredentialsError
    from .pades import sign_pdf as sign_pdf
    from .signer import describe_certificate as describe_certificate
    from .signer import signer_of as signer_of
    from .trial import TrialSeal as TrialSeal
    from .trial import make_trial_seal as make_trial_seal
    from .verify import Verdict as Verdict
    from .verify import verify_detached as verify_detached
    from .verify import verify_pdf as verify_pdf

_HOMES = {
    "DetachedSignature": "cades",
    "sign_detached": "cades",
    "sign_pdf": "pades",
    "Credentials": "credentials",
    "CredentialsError": "credentials",
    "describe_certificate": "signer",
    "signer_of": "signer",
    "TrialSeal": "trial",
    "make_trial_seal": "trial",
    "Verdict": "verify",
    "verify_detached": "verify",
    "verify_pdf": "verify",
}

__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
