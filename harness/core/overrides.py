"""The command line's overrides, read before Hydra: one that Hydra's grammar cannot read is one line naming the fix."""

from __future__ import annotations


def unreadable_override(argv: list[str]) -> str | None:
    """One line naming the fix for the first command-line override Hydra's grammar cannot read (a value with
    characters outside its plain words, e.g. a non-ASCII path), else None. Hydra itself would print its lexer's
    exception with a caret, which does not say that quoting the value is the fix."""
    from hydra._internal.utils import get_args_parser  # lazy: only the entry points parse a command line
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        args, _ = get_args_parser().parse_known_args(argv)
    except SystemExit:  # a malformed flag: Hydra's own parser says so
        return None
    parser = OverridesParser.create()
    for override in args.overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException:
            key, sep, value = override.partition("=")
            quoted = f"{key}=\"{value}\"" if sep and '"' not in value else f"{key}='{value}'" if sep else override
            return (f"cannot read the override {override!r}: Hydra's grammar reads an unquoted value only if it "
                    f"is made of ASCII letters, digits, spaces and a few signs (_-+./:\\); quote the value inside the override, "
                    f"e.g. '{quoted}' (single quotes for the shell around the whole override).")
    return None
