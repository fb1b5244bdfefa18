"""Small fixtures in the released formats of the benchmarks in lingcoder.evaluate.suites, with
correct and broken solutions; shared by the suites' tests and the grader-parity tests."""

import base64
import json
import pickle
import sqlite3
import zlib


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def compress_tests(cases):
    """LiveCodeBench's private-test encoding: base64(zlib(pickle(JSON text)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


# -- LiveCodeBench ---------------------------------------------------------------------------------
LCB_STDIN_PUBLIC = [{"input": "3\n1.5 2.5 3\n", "output": "7.000\n", "testtype": "stdin"}]
LCB_STDIN_PRIVATE = [
    {"input": "2\n0.25 0.25\n", "output": "0.5\n", "testtype": "stdin"},
    {"input": "1\n10\n", "output": "10.0\n", "testtype": "stdin"},
]
LCB_FUNCTIONAL_TESTS = [
    {"input": "[2, 7, 11, 15]\n9", "output": "[0, 1]", "testtype": "functional"},
    {"input": "[3, 2, 4]\n6", "output": "[1, 2]", "testtype": "functional"},
]
LCB_ROWS = [
    {
        "question_title": "Sum of reals",
        "question_content": "Read n, then n real numbers on one line; print their sum.",
        "platform": "atcoder",
        "question_id": "abc900_a",
        "contest_id": "abc900",
        "contest_date": "2024-03-02T00:00:00",
        "starter_code": "",
        "difficulty": "easy",
        "public_test_cases": json.dumps(LCB_STDIN_PUBLIC),
        "private_test_cases": compress_tests(LCB_STDIN_PRIVATE),
        "metadata": "{}",
    },
    {
        "question_title": "two-sum",
        "question_content": "Return the indices of the two numbers that add up to target.",
        "platform": "leetcode",
        "question_id": "1",
        "contest_id": "weekly-contest-999",
        "contest_date": "2024-07-20T00:00:00",
        "starter_code": "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
        "difficulty": "easy",
        "public_test_cases": json.dumps(LCB_FUNCTIONAL_TESTS[:1]),
        "private_test_cases": json.dumps(LCB_FUNCTIONAL_TESTS[1:]),
        "metadata": json.dumps({"func_name": "twoSum"}),
    },
]
LCB_SOLUTIONS = {
    "abc900_a": {
        "correct": [
            "n = int(input())\nprint(sum(map(float, input().split())))\n",
            "import sys\n\ndef main():\n    data = sys.stdin.read().split()\n    print(sum(map(float, data[1:])))\n\n"
            "if __name__ == '__main__':\n    main()\n",
            "n = int(input())\nprint(sum(map(float, input().split())), end='  \\n\\n')\nexit(0)\n",
            "import sys\ninput = sys.stdin.readline\nn = int(input())\nprint(sum(float(x) for x in input().split()))\n",
        ],
        "wrong": [
            "n = int(input())\nprint(sum(map(float, input().split())) + 1)\n",
            "n = int(input())\nprint(sum(map(float, input().split())))\nquit()\n",  # LiveCodeBench disables quit()
            "n = int(input())\nprint(sum(map(float, input().split())))\nprint()\nprint(0)\n",  # an extra line
            "print(7.0)\n",
            "n = int(input())\nprint(1 / 0)\n",
        ],
    },
    "1": {
        "correct": [
            "class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
            "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
            "                return (seen[target - x], i)\n            seen[x] = i\n",
        ],
        "wrong": [
            "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]\n",
            "class Solution:\n    def twoSums(self, nums, target):\n        return [0, 1]\n",
        ],
    },
}

# -- BigCodeBench ----------------------------------------------------------------------------------
BCB_TEST = """import unittest
import os
import shutil
import json
import tempfile


class TestCases(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "data.json")
        with open(self.path, "w") as handle:
            json.dump({"a": 1, "b": 2}, handle)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def test_sum(self):
        self.assertEqual(task_func(self.path), 3)

    def test_missing_file(self):
        with self.assertRaises(FileNotFoundError):
            task_func(os.path.join(self.dir, "nope.json"))
"""
BCB_ROWS = [
    {
        "task_id": "BigCodeBench/0",
        "complete_prompt": 'import json\nimport os\n\ndef task_func(path):\n    """\n    Sum the values of the JSON '
        'object in the file at path.\n\n    Requirements:\n    - json\n    - os\n    """\n',
        "instruct_prompt": "Sum the values of the JSON object stored in a file. The function should raise "
        "FileNotFoundError for a missing file.\nYou should write self-contained code starting with:\n```\n"
        "import json\nimport os\ndef task_func(path):\n```",
        "code_prompt": "import json\nimport os\ndef task_func(path):\n",
        "canonical_solution": "    with open(path) as handle:\n        return sum(json.load(handle).values())\n",
        "test": BCB_TEST,
        "entry_point": "task_func",
        "doc_struct": "{}",
        "libs": "['json', 'os']",
    },
    {
        "task_id": "BigCodeBench/1",
        "complete_prompt": "import lingcoder_surely_missing_lib\n\ndef task_func(x):\n",
        "instruct_prompt": "Return x.",
        "code_prompt": "import lingcoder_surely_missing_lib\ndef task_func(x):\n",
        "canonical_solution": "    return x\n",
        "test": "import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_x(self):\n"
        "        self.assertEqual(task_func(1), 1)\n",
        "entry_point": "task_func",
        "doc_struct": "{}",
        "libs": "['lingcoder_surely_missing_lib']",
    },
]
BCB_WRONG = [
    "    print(sum(json.load(open(path)).values()))\n    exit(0)\n",  # exit() is disabled by the grader
    "    with open(path) as handle:\n        return len(json.load(handle))\n",  # wrong value
    "    try:\n        with open(path) as handle:\n            return sum(json.load(handle).values())\n"
    "    except FileNotFoundError:\n        return 0\n",  # swallows the error one test expects
]

# -- CRUXEval --------------------------------------------------------------------------------------
CRUX_ROWS = [
    {"id": "sample_0", "code": "def f(text):\n    return text[::-1] + '!'", "input": "'abc'", "output": "'cba!'"},
    {"id": "sample_1", "code": "def f(nums):\n    return [x * 2 for x in nums]", "input": "[1, 2]", "output": "[2, 4]"},
]

# -- HumanEvalFix (HumanEvalPack rows) -------------------------------------------------------------
HEF_ROWS = [
    {
        "task_id": "Python/0",
        "prompt": 'def add(x: int, y: int) -> int:\n    """Add two numbers."""\n',
        "declaration": "def add(x: int, y: int) -> int:\n",
        "canonical_solution": "    return x + y\n",
        "buggy_solution": "    return x - y\n",
        "entry_point": "add",
        "import": "",
        "test_setup": "",
        "test": "\n\n\n\n\ndef check(add):\n    assert add(2, 3) == 5\n    assert add(0, 0) == 0\n\ncheck(add)",
    },
    {
        "task_id": "JavaScript/0",
        "prompt": "/* Add two numbers */\nconst add = (x, y) => {\n",
        "declaration": "\nconst add = (x, y) => {\n",
        "canonical_solution": "  return x + y;\n};\n\n",
        "buggy_solution": "  return x - y;\n};\n\n",
        "entry_point": "add",
        "import": "",
        "test_setup": "",
        "test": "const testAdd = () => {\n  console.assert(add(2, 3) === 5)\n  console.assert(add(0, 0) === 0)\n}\n"
        "\ntestAdd()\n",
    },
    {
        "task_id": "CPP/0",
        "prompt": "/* Add two numbers */\n#include<stdio.h>\nusing namespace std;\nint add(int x,int y){\n",
        "declaration": "#include<stdio.h>\n#include<stdlib.h>\nusing namespace std;\n#include<algorithm>\n"
        "#include<math.h>\nint add(int x,int y){\n",
        "canonical_solution": "    return x+y;\n}\n",
        "buggy_solution": "    return x-y;\n}\n",
        "entry_point": "add",
        "import": "",
        "test_setup": "",
        "test": "#undef NDEBUG\n#include<assert.h>\nint main(){\n"
        "    assert (add(2,3)==5);\n    assert (add(0,0)==0);\n}\n",
    },
    {
        "task_id": "Java/0",
        "prompt": "import java.util.*;\nimport java.lang.*;\n\nclass Solution {\n    /** Add two numbers */\n"
        "    public int add(int x, int y) {\n",
        "declaration": "import java.util.*;\nimport java.lang.*;\n\nclass Solution {\n"
        "    public int add(int x, int y) {\n",
        "canonical_solution": "        return x + y;\n    }\n}",
        "buggy_solution": "        return x - y;\n    }\n}",
        "entry_point": "add",
        "import": "",
        "test_setup": "",
        "test": "public class Main {\n    public static void main(String[] args) {\n"
        "        Solution s = new Solution();\n"
        "        List<Boolean> correct = Arrays.asList(\n"
        "                s.add(2, 3) == 5,\n                s.add(0, 0) == 0\n"
        "        );\n        if (correct.contains(false)) {\n"
        "            throw new AssertionError();\n        }\n    }\n}",
    },
    {
        "task_id": "Go/0",
        "prompt": 'import (\n    "math"\n)\n\n// Add two numbers.\nfunc Add(x int, y int) int {\n',
        "declaration": "\nfunc Add(x int, y int) int {\n",
        "canonical_solution": "    return x + y\n}\n\n",
        "buggy_solution": "    return x - y\n}\n\n",
        "entry_point": "Add",
        "import": 'import (\n    "math"\n)\n',
        "test_setup": 'package main\n\nimport (\n    "testing"\n    "github.com/stretchr/testify/assert"\n)\n',
        "test": "func TestAdd(t *testing.T) {\n    assert := assert.New(t)\n    assert.Equal(5, Add(2, 3))\n"
        "    assert.Equal(0, Add(0, 0))\n}\n",
    },
    {
        "task_id": "Rust/0",
        "prompt": "\n/*\n Add two numbers\n*/\nfn add(x: i32, y: i32) -> i32{\n",
        "declaration": "\nuse std::{slice::Iter, cmp::{max, self}, mem::replace, collections::{HashSet, HashMap}, "
        "ops::Index, ascii::AsciiExt};\nuse rand::Rng;\nuse regex::Regex;\nuse md5;\nuse std::any::{Any, TypeId};\n\n"
        "fn add(x: i32, y: i32) -> i32{\n",
        "canonical_solution": "    return x + y;\n}\n",
        "buggy_solution": "    return x - y;\n}\n",
        "entry_point": "add",
        "import": "",
        "test_setup": "",
        "test": "\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn test_add() {\n"
        "        assert!(add(2, 3) == 5);\n        assert!(add(0, 0) == 0);\n    }\n\n}\n",
    },
]

# -- DS-1000 ---------------------------------------------------------------------------------------
DS1000_CONTEXT = '''import numpy as np
import copy
import tokenize, io


def generate_test_case(test_case_id):
    def define_test_input(test_case_id):
        if test_case_id == 1:
            a = np.array([1.5, 2.0, 3.25])
        if test_case_id == 2:
            a = np.array([0.1, 0.2])
        return a

    def generate_ans(data):
        a = data
        result = a * 2
        return result

    test_input = define_test_input(test_case_id)
    expected_result = generate_ans(copy.deepcopy(test_input))
    return test_input, expected_result


def exec_test(result, ans):
    np.testing.assert_allclose(result, ans)
    return 1


exec_context = r"""
import numpy as np
a = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range(2):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)


def test_string(solution: str):
    tokens = []
    for token in tokenize.tokenize(io.BytesIO(solution.encode("utf-8")).readline):
        tokens.append(token.string)
    assert "for" not in tokens
'''
DS1000_ROWS = [
    {
        "prompt": "Problem:\nDouble every element of the numpy array a without a loop.\nA:\n<code>\n"
        "import numpy as np\n"
        "a = np.array([1.5, 2.0, 3.25])\n</code>\nresult = ... # put solution in this variable\n"
        "BEGIN SOLUTION\n<code>\n",
        "reference_code": "result = a * 2\n",
        "metadata": {
            "problem_id": 0,
            "library_problem_id": 0,
            "library": "Numpy",
            "test_case_cnt": 2,
            "perturbation_type": "Origin",
            "perturbation_origin_id": 0,
        },
        "code_context": DS1000_CONTEXT,
    },
    {
        "prompt": "Problem:\nSame, with TensorFlow.\n<code>\n",
        "reference_code": "result = a * 2\n",
        "metadata": {
            "problem_id": 1,
            "library_problem_id": 0,
            "library": "Tensorflow",
            "test_case_cnt": 1,
            "perturbation_type": "Origin",
            "perturbation_origin_id": 1,
        },
        "code_context": DS1000_CONTEXT.replace(
            "import numpy as np\nimport copy", "import tensorflow as tf\nimport numpy as np\nimport copy", 1
        ),
    },
]


# -- Spider ----------------------------------------------------------------------------------------
def write_spider(root):
    """spider/dev.json plus spider/database/concert/concert.sqlite, as the release lays them out."""
    database = root / "database" / "concert"
    database.mkdir(parents=True)
    with sqlite3.connect(database / "concert.sqlite") as db:
        db.execute("CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, age INTEGER, country TEXT)")
        db.executemany(
            "INSERT INTO singer VALUES (?, ?, ?, ?)",
            [(1, "Ana", 31, "France"), (2, "Bo", 19, "Norway"), (3, "Cy", 25, "France"), (4, "Di", 40, "Peru")],
        )
    dev = [
        {
            "db_id": "concert",
            "question": "Names of singers older than 20.",
            "query": "SELECT name FROM singer WHERE age > 20",
            "query_toks": [],
            "sql": {},
        },
        {
            "db_id": "concert",
            "question": "Names of all singers from youngest to oldest.",
            "query": "SELECT name FROM singer ORDER BY age",
            "query_toks": [],
            "sql": {},
        },
        {
            "db_id": "concert",
            "question": "How many singers are from each country?",
            "query": "SELECT country, count(*) FROM singer GROUP BY country",
            "query_toks": [],
            "sql": {},
        },
    ]
    path = root / "dev.json"
    path.write_text(json.dumps(dev, indent=1))
    return path


# -- HumanEval-infilling ---------------------------------------------------------------------------
INFILL_ROWS = [
    {
        "task_id": "SingleLineInfilling/HumanEval/0/L1",
        "entry_point": "add",
        "prompt": 'def add(a, b):\n    """Add."""\n',
        "suffix": "    return c\n",
        "canonical_solution": "    c = a + b\n",
        "test": "\n\nMETADATA = {}\n\n\ndef check(candidate):\n"
        "    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n",
    }
]
