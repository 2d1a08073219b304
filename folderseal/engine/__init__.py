"""The embedded local signer: PAdES for PDFs, detached CAdES for everything else.

Load a :class:`Seal` once, then call :func:`sign_pdf` or :func:`sign_detached` per file;
:func:`verify_pdf` and :func:`verify_detached` check the results without trusting
anything, :func:`signer_of` reads back who signed an output, and
:func:`make_trial_seal` writes a self-signed seal to start with.
"""

from __future__ import annotations

from .cades import DetachedSignature, sign_detached
from .pades import sign_pdf
from .seal import Seal, SealMaterialError
from .signer import describe_certificate, signer_of
from .trial import TrialSeal, make_trial_seal
from .verify import Verdict, verify_detached, verify_pdf

__all__ = [
    "DetachedSignature",
    "Seal",
    "SealMaterialError",
    "TrialSeal",
    "Verdict",
    "describe_certificate",
    "make_trial_seal",
    "sign_detached",
    "sign_pdf",
    "signer_of",
    "verify_detached",
    "verify_pdf",
]
