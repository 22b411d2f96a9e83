"""Rewrite the generated parts of the README from the code, so they cannot drift:

    python docs/generate.py

- between ``<!-- settings:start -->`` and ``<!-- settings:end -->``: every setting, by stage,
  from the declarations in `encluster.stages` (a test fails when the README is stale).
"""

import re
from pathlib import Path

from encluster.params import markdown_table
from encluster.presets import DEFAULT_PRESET, get_preset
from encluster.stages import GROUPS

README = Path(__file__).parent.parent / "README.md"


def main():
    table = markdown_table(GROUPS, get_preset(DEFAULT_PRESET))
    text = README.read_text()
    new, count = re.subn(r"(<!-- settings:start -->\n).*?(<!-- settings:end -->)",
                         lambda m: m.group(1) + table.strip() + "\n" + m.group(2), text, flags=re.S)
    if count != 1:
        raise SystemExit("README.md needs one <!-- settings:start --> ... <!-- settings:end --> block")
    README.write_text(new)
    print(f"README.md: settings table rewritten ({table.count(chr(10))} lines)")


if __name__ == "__main__":
    main()
