"""The Extensions Index description of the Slicer extension, generated from the top-level
CMakeLists.txt (the one place the metadata is written).

Two files come out of ``set(EXTENSION_...)`` and ``project(...)``:

- ``ExtensionsIndex/SAMFewShot.json``: the catalog entry the Slicer/ExtensionsIndex repository
  takes today (schema ``slicer-extension-catalog-entry-schema-v1.0.1``: ``$schema``, ``category``,
  ``scm_url``, ``scm_revision``, ``build_dependencies``, ``build_subdirectory``, ``tier``; the schema
  allows no other keys);
- ``ExtensionsIndex/SAMFewShot.s4ext``: the classic ``key value`` description (what Slicer's
  Extension Wizard writes and older Index branches take), with homepage, contributors, icon and
  screenshots.

Regenerate with ``python -m SAMFewShotLib.slicer_support.extension_description`` after editing
CMakeLists.txt; a test fails while the files are stale. Addresses still holding
``REPLACE-WITH-`` are listed by :func:`placeholders` (they are set in one marked block of
CMakeLists.txt).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

#: The catalog entry schema the JSON follows.
CATALOG_SCHEMA = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json#"
#: Marker of an address or name still to be filled in before submission.
PLACEHOLDER = "REPLACE-WITH-"
#: "Name (Organization)" items separated by ", ", as the Index asks contributors to be written.
CONTRIBUTOR_PATTERN = re.compile(r"^[^(),]+ \([^()]+\)(, [^(),]+ \([^()]+\))*$")


def _strip_comments(text: str) -> str:
    return "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in text.splitlines())


def cmake_variables(cmake_text: str) -> dict:
    """Every ``set(NAME "value")`` / ``set(NAME value)`` of a CMake file, in order, with
    ``${OTHER}`` references to earlier ones substituted; ``project(NAME)`` as ``PROJECT_NAME``."""
    text = _strip_comments(cmake_text)
    variables: dict = {}
    project = re.search(r"project\(\s*([A-Za-z0-9_]+)", text)
    if project:
        variables["PROJECT_NAME"] = project.group(1)
    for match in re.finditer(r'set\(\s*([A-Za-z0-9_]+)\s+("(?:[^"\\]|\\.)*"|[^\s)]+)\s*\)', text):
        name, raw = match.group(1), match.group(2)
        value = raw[1:-1] if raw.startswith('"') else raw
        value = re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: variables.get(m.group(1), m.group(0)), value)
        variables[name] = value.replace('\\"', '"')
    return variables


def metadata(cmake_text: str) -> dict:
    """The extension's metadata from the top-level CMakeLists.txt text.

    Raises:
        ValueError: a required ``EXTENSION_*`` variable is missing, or the contributors are not
            in the Index's "Name (Organization)" form.
    """
    variables = cmake_variables(cmake_text)
    required = ("PROJECT_NAME", "EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
                "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS",
                "SAMFEWSHOT_REPOSITORY_URL")
    missing = [name for name in required if not variables.get(name)]
    if missing:
        raise ValueError(f"CMakeLists.txt must set {', '.join(missing)}")
    contributors = variables["EXTENSION_CONTRIBUTORS"]
    if not CONTRIBUTOR_PATTERN.match(contributors):
        raise ValueError(f"EXTENSION_CONTRIBUTORS must be 'Name (Organization), ...', not {contributors!r}")
    depends = [] if variables["EXTENSION_DEPENDS"] == "NA" else variables["EXTENSION_DEPENDS"].split()
    return {
        "name": variables["PROJECT_NAME"],
        "homepage": variables["EXTENSION_HOMEPAGE"],
        "category": variables["EXTENSION_CATEGORY"],
        "contributors": contributors,
        "description": variables["EXTENSION_DESCRIPTION"],
        "iconurl": variables["EXTENSION_ICONURL"],
        "screenshoturls": variables["EXTENSION_SCREENSHOTURLS"],
        "depends": depends,
        "scm_url": variables["SAMFEWSHOT_REPOSITORY_URL"] + ".git",
        "scm_revision": variables.get("SAMFEWSHOT_SCM_REVISION", "main"),
    }


def catalog_entry(meta: dict) -> dict:
    """The Index's JSON catalog entry (schema v1.0.1 keys only)."""
    return {
        "$schema": CATALOG_SCHEMA,
        "build_dependencies": list(meta["depends"]),
        "build_subdirectory": ".",
        "category": meta["category"],
        "scm_revision": meta["scm_revision"],
        "scm_url": meta["scm_url"],
        "tier": 1,
    }


def s4ext_text(meta: dict) -> str:
    """The classic ``.s4ext`` description (one ``key value`` per line)."""
    lines = [
        "# Generated from CMakeLists.txt by python -m SAMFewShotLib.slicer_support.extension_description: do not edit.",
        "scm git",
        f"scmurl {meta['scm_url']}",
        f"scmrevision {meta['scm_revision']}",
        f"depends {' '.join(meta['depends']) or 'NA'}",
        "build_subdirectory .",
        f"homepage {meta['homepage']}",
        f"contributors {meta['contributors']}",
        f"category {meta['category']}",
        f"iconurl {meta['iconurl']}",
        "status ",
        f"description {meta['description']}",
        f"screenshoturls {meta['screenshoturls']}",
        "enabled 1",
    ]
    return "\n".join(lines) + "\n"


def placeholders(meta: dict) -> list:
    """The metadata keys whose value still holds :data:`PLACEHOLDER`."""
    return sorted(key for key, value in meta.items() if isinstance(value, str) and PLACEHOLDER in value)


def generated_files(root: Path) -> dict:
    """{path: text} of the two description files for the source tree at ``root``."""
    meta = metadata((root / "CMakeLists.txt").read_text(encoding="utf-8"))
    folder = root / "ExtensionsIndex"
    return {
        folder / f"{meta['name']}.json": json.dumps(catalog_entry(meta), indent=2) + "\n",
        folder / f"{meta['name']}.s4ext": s4ext_text(meta),
    }


def main(argv=None) -> int:
    """Write the description files next to the CMakeLists.txt of the tree (default: this checkout)."""
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]) if args else Path(__file__).resolve().parents[2]
    for path, text in generated_files(root).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    meta = metadata((root / "CMakeLists.txt").read_text(encoding="utf-8"))
    left = placeholders(meta)
    if left:
        print(f"still to fill in before submitting (CMakeLists.txt, marked block): {', '.join(left)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
