"""`cioproc completion bash|zsh`: shell completion scripts generated from the argument parsers.

The words come from the parsers themselves (``cioproc``'s and, for the subcommands that parse
their own arguments, theirs), so a new option completes without editing a script.
"""

from __future__ import annotations

import argparse
import importlib

# Subcommands that parse their own arguments: the module whose build_parser() describes them.
DELEGATED_PARSERS = {"sandbox": "cioproc.sandbox.cli", "replay": "cioproc.replay", "demo": "cioproc.demo"}


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """A parser's actions: argparse has no public API that lists them (``add_argument`` returns
    each one, but only the parser keeps them all)."""
    return parser._actions  # noqa: SLF001  (argparse has no public accessor)


def _subcommands(action: argparse.Action) -> dict[str, argparse.ArgumentParser] | None:
    """{name: parser} if ``action`` is the one ``add_subparsers`` returns, else None."""
    if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001  (argparse's class is private)
        return action.choices
    return None


def _words(parser: argparse.ArgumentParser) -> list[str]:
    """The options, choices and sub-subcommands a parser accepts."""
    words: list[str] = []
    for action in _actions(parser):
        subcommands = _subcommands(action)
        if subcommands is not None:
            for name, sub in subcommands.items():
                words.append(name)
                words.extend(w for w in _words(sub) if w not in words)
            continue
        words.extend(action.option_strings)
        if action.choices and not isinstance(action.choices, dict):
            words.extend(str(choice) for choice in action.choices)
    return list(dict.fromkeys(w for w in words if w not in ("-h",)))


def command_words(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """{subcommand: the words it completes}, plus ``""`` for the top level."""
    subcommands = next(s for s in map(_subcommands, _actions(parser)) if s is not None)
    table = {"": list(subcommands) + ["--help", "--version"]}
    for name, subparser in subcommands.items():
        module = DELEGATED_PARSERS.get(name)
        if module is not None:
            try:
                subparser = importlib.import_module(module).build_parser()
            except Exception:  # a delegate that cannot be loaded still completes its name
                pass
        table[name] = list(dict.fromkeys(_words(subparser) + ["--help"]))
    return table


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` (bash or zsh)."""
    table = command_words(parser)
    cases = "\n".join(f"        {name}) words=\"{' '.join(words)}\" ;;" for name, words in table.items() if name)
    if shell == "bash":
        return f'''# bash completion for cioproc: source <(cioproc completion bash)
_cioproc() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} words
    if [ "$COMP_CWORD" -eq 1 ]; then
        words="{' '.join(table[''])}"
    else
        case "${{COMP_WORDS[1]}}" in
{cases}
        *) words="" ;;
        esac
    fi
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    if [ ${{#COMPREPLY[@]}} -eq 0 ]; then COMPREPLY=($(compgen -f -- "$cur")); fi
}}
complete -F _cioproc cioproc
'''
    zsh_cases = "\n".join(f"        {name}) opts=({' '.join(words)}) ;;" for name, words in table.items() if name)
    return f'''#compdef cioproc
# zsh completion for cioproc: cioproc completion zsh > "${{fpath[1]}}/_cioproc" (or source it)
_cioproc() {{
    local -a opts
    if (( CURRENT == 2 )); then
        opts=({' '.join(table[''])})
    else
        case $words[2] in
{zsh_cases}
        *) opts=() ;;
        esac
    fi
    compadd -- $opts
    _files
}}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then _cioproc "$@"; else compdef _cioproc cioproc; fi
'''
