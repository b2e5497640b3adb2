"""``python3 -m physgrad.launch``: ``torchrun`` that also starts on Python 3.11 with torch 1.13.

torch 1.13's launcher parses ``--redirects`` / ``--tee`` (default ``0``) by
looking the value up among the members of an ``IntFlag``; Python 3.11 no
longer lists the zero and combined flags there, so a plain ``torchrun`` (as
shipped by Debian 12: torch 1.13.1, Python 3.11) fails before starting any
worker with ``AttributeError: 'NoneType' object has no attribute 'get'``
(meta-llama/llama#86). This module repairs that lookup when it is broken and
runs torchrun's own ``main`` with the same arguments::

    python3 -m physgrad.launch --nproc_per_node=2 -m physgrad train poisson ...

(Plain ``torchrun --redirects 1 --tee 1 ...`` also avoids the bug.) With a
torch whose launcher works, this is exactly ``torchrun``.
"""
import re
import sys
from typing import Dict, Union

__all__ = ["repair_torchrun", "main"]


def repair_torchrun() -> bool:
    """Fix ``Std.from_str`` of torch's elastic launcher if it is broken; True if it was."""
    from torch.distributed.elastic.multiprocessing import api
    if api.Std.from_str("0") is not None and api.Std.from_str("3") is not None:
        return False
    std = api.Std

    def from_str(cls: type, vm: str) -> Union["api.Std", Dict[int, "api.Std"]]:
        if re.match(api._VALUE_REGEX, vm):
            return std(int(vm))
        if re.match(api._MAPPING_REGEX, vm):
            return {int(i): std(int(v)) for i, v in (m.split(":") for m in vm.split(","))}
        raise ValueError(f"{vm} does not match: <{api._VALUE_REGEX}> or <{api._MAPPING_REGEX}>")

    std.from_str = classmethod(from_str)  # type: ignore[assignment]
    return True


def main() -> None:
    """``torchrun`` with :func:`repair_torchrun` applied (arguments from ``sys.argv``)."""
    repair_torchrun()
    from torch.distributed import run
    sys.argv[0] = "torchrun"
    run.main()


if __name__ == "__main__":
    main()
