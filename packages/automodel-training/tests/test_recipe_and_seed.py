"""BaseRecipe tracks what a checkpoint needs; set_seed makes runs repeatable."""

from __future__ import annotations

import random

import pytest
import torch

from automodel.training import BaseRecipe, set_seed


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
