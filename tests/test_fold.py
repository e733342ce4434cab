import pytest

from lowbit.sw.fold import auto_fold, parse_fold, plan_folding
from lowbit.sw.randnet import random_network


@pytest.fixture(scope="module")
def sfc():
    return random_network([784, 256, 256, 256, 10], "s4", "u4")


def test_plan_cycles_follow_the_mvau_formula(sfc):
    plan = plan_folding(sfc, parse_fold("16x16,16x16,16x16,10x16", 4))
    assert [f.cycles for f in plan.layers] == [16 * 49, 16 * 16, 16 * 16, 1 * 16]
    assert plan.initiation_interval == 784 and plan.mac_lanes == 3 * 256 + 160
    assert str(plan) == "16x16,16x16,16x16,10x16"


def test_fold_errors_name_layer_value_and_divisors(sfc):
    with pytest.raises(ValueError, match=r"pe must be a divisor of the 10 rows .* allowed pe: 1, 2, 5, 10\), not 16"):
        plan_folding(sfc, parse_fold("16x16", 4))
    with pytest.raises(ValueError, match=r"simd must be a divisor of the 784 columns"):
        plan_folding(sfc, parse_fold("16x10,16x16,16x16,10x16", 4))
    with pytest.raises(ValueError, match=r"pe must be a divisor of the 256 rows .* not 512"):
        plan_folding(sfc, parse_fold("512x16,16x16,16x16,10x16", 4))
    with pytest.raises(ValueError, match=r"layer 0 PE \(16\) and layer 1 SIMD \(8\)|must divide one another"):
        plan_folding(random_network([12, 12, 4]), [(4, 3), (2, 3)])
    with pytest.raises(ValueError, match=r"fold must give one PExSIMD per layer \(4 layers\), not 2"):
        plan_folding(sfc, [(16, 16), (16, 16)])
    with pytest.raises(ValueError, match=r"fold must be PExSIMD per layer"):
        parse_fold("16-16", 4)


@pytest.mark.parametrize("budget", [16, 64, 256, 1024])
def test_auto_fold_meets_the_lane_budget_and_balances(sfc, budget):
    plan = auto_fold(sfc, max_lanes=budget)
    assert plan.mac_lanes <= budget
    # no cheaper plan of the same kind reaches a lower II: doubling the budget never slows down
    bigger = auto_fold(sfc, max_lanes=budget * 2)
    assert bigger.initiation_interval <= plan.initiation_interval


def test_auto_fold_for_a_cycle_target(sfc):
    plan = auto_fold(sfc, target_cycles=1000)
    assert plan.initiation_interval <= 1000
