"""The entry point of a checkout: `python main.py --config config/resnet_softtrip.yml [key=value ...]`.

Same as `trytry-reid train ...`; with no --config it runs the embedded demo (config/demo_digits.yml).
Other commands work too: `python main.py evaluate --config ... --checkpoint ...`.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # runs from a checkout even before `pip install -e .`

from trytry_reid.jobs.cli import COMMANDS, main  # noqa: E402
from trytry_reid.jobs.commands import DEMO_CONFIG  # noqa: E402


def with_defaults(argv: list[str]) -> list[str]:
    if not argv or argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["train", *argv]
    if argv[0] == "train" and not any(a in ("--config", "-c") or a.startswith("--config=") for a in argv):
        argv = [argv[0], "--config", str(ROOT / DEMO_CONFIG), *argv[1:]]
    return argv


if __name__ == "__main__":
    sys.exit(main(with_defaults(sys.argv[1:])))
