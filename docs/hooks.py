"""MkDocs hook: fills the pages' generated parts from the code when the site is built, so they
cannot drift from it: ``{{ cli_reference }}`` (every command's --help), ``{{ settings_table }}``
(the declared settings), ``{{ results/NAME.md }}`` (a maintained benchmark's results file, as it is) and
``{{ studies/NAME.md }}`` (a finished study's)."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
FOLDERS = {"results": ROOT / "benchmarks" / "results", "studies": ROOT / "studies" / "results"}


def _cli_reference():
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; the page has a fixed width
    from encluster.cli import build_parser

    parser = build_parser()
    sections = [("encluster", parser)]
    sections += [(f"encluster {name}", sub) for name, sub in parser._subparsers._group_actions[0].choices.items()]
    return "\n\n".join(f"## `{title}`\n\n```text\n{sub.format_help().rstrip()}\n```" for title, sub in sections)


def _settings_table():
    from encluster.params import markdown_table
    from encluster.presets import DEFAULT_PRESET
    from encluster.stages import get_preset
    from encluster.stages import GROUPS

    return markdown_table(GROUPS, get_preset(DEFAULT_PRESET))


def _results(match):
    text = (FOLDERS[match.group(1)] / match.group(2)).read_text()
    return re.sub(r"(?m)^# ", "### ", text)  # the file's own title sits under the page's heading


def on_page_markdown(markdown, **kwargs):
    markdown = markdown.replace("{{ cli_reference }}", _cli_reference()) if "{{ cli_reference }}" in markdown \
        else markdown
    if "{{ settings_table }}" in markdown:
        markdown = markdown.replace("{{ settings_table }}", _settings_table())
    return re.sub(r"\{\{ (results|studies)/([\w.-]+\.md) \}\}", _results, markdown)
