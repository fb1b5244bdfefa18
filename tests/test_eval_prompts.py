from lingcoder.evaluate.benchmarks import Problem
from lingcoder.evaluate.prompts import completion_from_answer, extract_code, instruct_messages
from lingcoder.generation.sampling import cut_at_stop


def test_extract_prefers_the_language_block():
    answer = "text\n```\nplain\n```\nmore\n```python\nreal = 1\n```\n"
    assert extract_code(answer, "python") == "real = 1\n"
    assert extract_code("```js\nlet a;\n```", "python") == "let a;\n"
    assert extract_code("no fence at all", "python") == "no fence at all"
    assert extract_code("```cpp\nint x;\n", "cpp") == "int x;\n"  # unterminated fence


def test_completion_from_answer():
    py = Problem("t", "python", 'def f(x):\n    """doc"""\n', "assert f(1) == 2\n")
    completion = completion_from_answer(py, "```python\ndef f(x):\n    return x + 1\n```")
    assert py.solution(completion) == 'def f(x):\n    """doc"""\n\ndef f(x):\n    return x + 1\n'
    cpp = Problem("t", "cpp", "#include <cassert>\nlong f(long x) {\n", "}\n")
    answer = "```cpp\n#include <cassert>\nlong f(long x) {\n    return x + 1;\n}\n```"
    assert completion_from_answer(cpp, answer) == "\n    return x + 1;\n}\n"
    mbpp = Problem("t", "python", "Write f.", "assert f(1) == 2\n", prompt_is_code=False)
    assert completion_from_answer(mbpp, "```python\ndef f(x): return x+1\n```") == "def f(x): return x+1\n"


def test_instruct_messages_and_stop():
    problem = Problem("t", "cpp", "long f(long x) {\n", "")
    (message,) = instruct_messages(problem)
    assert message["role"] == "user" and "C++" in message["content"] and "```cpp" in message["content"]
    assert cut_at_stop("abc\ndef x", ("\ndef ", "zz")) == "abc"
    assert cut_at_stop("abc", ()) == "abc"
