"""Griffe extension: Sphinx roles in xpnet's docstrings (:class:`~xpnet.X`) as Markdown code.

The docstrings are written as prose with reStructuredText roles and ``literals``; the site
renders them as Markdown, where a role would show as text. ``~`` keeps the last dotted part,
as Sphinx does.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const):`(~?)([^`]+)`")


def _code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRolesAsCode(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
