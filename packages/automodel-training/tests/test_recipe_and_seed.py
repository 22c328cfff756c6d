"""BaseRecipe tracks what a checkpoint needs; set_seed makes runs repeatable."""

from __future__ import annotations

import random

import pytest
import torch

from automodel.training import BaseRecipe, TrainingError, main_reporting_user_errors, run_recipe, set_seed


def test_stateful_attributes_are_tracked_in_assignment_order():
    recipe = BaseRecipe()
    recipe.model = torch.nn.Linear(2, 2)
    recipe.optimizer = torch.optim.SGD(recipe.model.parameters(), lr=0.1)
    recipe.name = "plain"
    recipe._private = torch.nn.Linear(1, 1)
    assert list(recipe.stateful_attributes()) == ["model", "optimizer"]
    recipe.model = None
    assert list(recipe.stateful_attributes()) == ["optimizer"]


def test_base_recipe_methods_must_be_implemented():
    with pytest.raises(NotImplementedError):
        BaseRecipe().setup()


def test_the_same_seed_gives_the_same_random_numbers():
    set_seed(7)
    first = (random.random(), torch.rand(3))
    set_seed(7)
    second = (random.random(), torch.rand(3))
    assert first[0] == second[0] and torch.equal(first[1], second[1])
    assert set_seed(7, rank=2) == 9


class _Recorder(BaseRecipe):
    """A recipe that records its calls, failing in the loop when its config says so."""

    def __init__(self, cfg):
        self.cfg, self.calls = cfg, []

    def setup(self):
        self.calls.append("setup")

    def run_train_validation_loop(self):
        self.calls.append("loop")
        if self.cfg == "fail":
            raise TrainingError("the batch arithmetic does not work")


def test_run_recipe_sets_up_runs_and_always_cleans_up():
    cleaned = []
    assert run_recipe(_Recorder, "ok", cleanup=lambda: cleaned.append(True)) == 0
    with pytest.raises(TrainingError):
        run_recipe(_Recorder, "fail", first_process=False, cleanup=lambda: cleaned.append(True))
    assert cleaned == [True, True]


def test_a_user_error_is_one_line_and_exit_status_2_and_a_bug_keeps_its_traceback(capsys):
    assert main_reporting_user_errors(lambda: run_recipe(_Recorder, "fail")) == 2
    assert capsys.readouterr().err == "automodel: error: the batch arithmetic does not work\n"
    with pytest.raises(ZeroDivisionError):
        main_reporting_user_errors(lambda: 1 // 0)
