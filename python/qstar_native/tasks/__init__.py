"""Tasks: problems, answer checking and rewards (math here; code tasks live beside them)."""

from .annotations import AnnotationCheck, annotation_reward, check_annotations
from .code import CodeProblem, check_program, load_humaneval, load_mbpp, syntax_reward
from .gsm_symbolic import GsmSymbolic, Template, TemplateError, instantiate, load_instruction, load_templates
from .jsonl import DatasetFormatError, read_jsonl
from .math_answers import (
    extract_answer,
    extract_boxed,
    is_equivalent,
    load_gsm8k_jsonl,
    load_math_jsonl,
)
from .problem import Problem
from .problem_set import ProblemSet
from .safe_eval import SafeEvalError, compile_expr, safe_eval

__all__ = [
    "AnnotationCheck",
    "CodeProblem",
    "DatasetFormatError",
    "GsmSymbolic",
    "Problem",
    "ProblemSet",
    "SafeEvalError",
    "Template",
    "TemplateError",
    "annotation_reward",
    "check_annotations",
    "compile_expr",
    "extract_answer",
    "extract_boxed",
    "is_equivalent",
    "instantiate",
    "load_gsm8k_jsonl",
    "load_instruction",
    "load_math_jsonl",
    "load_templates",
    "check_program",
    "load_humaneval",
    "load_mbpp",
    "read_jsonl",
    "safe_eval",
    "syntax_reward",
]
