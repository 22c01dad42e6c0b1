"""Channel shares in the batch path: sellable quantities, the rule, the checker.

W (warehouse, ship 5) and S (store, ship 8) hold 5 units of ``a`` each: the pool holds
10. The single-order pairs and the service are in ``tests/service/test_channels.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from router.channels import ChannelStock, sellable
from router.checker import check
from router.profiles import Profile, ProfileError, parse_profile, parse_profile_set
from router.run import solve_folder
from router.scenario import ScenarioError, load_scenario
from tests.test_profiles import NODES, write_profiled

POOL = [("W", "a", 5), ("S", "a", 5)]


def web_order(qty: int, order_id: str = "o1", channel: str = "web") -> tuple:
    return (order_id, "l1", "a", qty, 0.0, channel, "")


def filled(folder, tmp_path) -> dict[str, int]:
    out = solve_folder(folder, tmp_path / "out")
    return out.assignments.groupby("order_id")["qty"].sum().to_dict()


# --- sellable quantities ------------------------------------------------------------------


def rules(**profiles: dict) -> ChannelStock:
    return ChannelStock({c: Profile(p) for c, p in profiles.items()})


def test_a_share_of_the_pool_rounds_down():
    shares = rules(market={"channel_share": 0.6}, web={"channel_share": 0.29})
    assert shares.sellable("market", ["a", "b"], [10, 3]).tolist() == [6, 1]
    assert shares.sellable("web", ["a"], [100]).tolist() == [29]
    assert shares.sellable("other", ["a"], [10]).tolist() == [10]  # no profile: all


def test_shares_and_reservations_sum_to_the_pool():
    shares = rules(
        web={"channel_share": 0.5},
        market={"channel_share": 0.5, "reserved": {"a": 2}},
    )
    web, market = (shares.sellable(c, ["a"], [10])[0] for c in ("web", "market"))
    assert (web, market) == (4, 6)  # 8 unreserved: 4 each, + market's 2
    assert web + market == 10
    # a channel without a profile of its own (the default: share 1) sees what is not
    # reserved for others
    assert shares.sellable("app", ["a"], [10]).tolist() == [8]


def test_reservations_beyond_the_pool_leave_others_nothing():
    shares = rules(market={"reserved": {"a": 12}})
    assert shares.sellable("market", ["a"], [10]).tolist() == [10]
    assert shares.sellable("web", ["a"], [10]).tolist() == [0]
    assert sellable(np.array([0]), 1.0, np.array([3]), np.array([3])).tolist() == [0]


# --- the rule in the batch: binds / does not bind ----------------------------------------------


@pytest.mark.parametrize(
    ("profiles", "expected"),
    [
        ({"web": {"channel_share": 0.3}}, 3),  # sellable 3 of 10
        ({"web": {"channel_share": 0.5}}, 5),  # sellable 5: does not bind
        ({"market": {"reserved": {"a": 8}}}, 2),  # 2 left unreserved for web
        ({"market": {"reserved": {"a": 4}}}, 5),  # 6 left: does not bind
        ({"web": {"channel_share": 0.5, "reserved": {"a": 1}}}, 5),  # 4 + 1
    ],
)
def test_channel_share_in_the_batch(profiles, expected, tmp_path):
    folder = write_profiled(
        tmp_path / "s", nodes=NODES, inventory=POOL, orders=[web_order(5)], profiles=profiles
    )
    assert filled(folder, tmp_path) == {"o1": expected}


@pytest.mark.parametrize("strategy", ["greedy", "optimize"])
def test_channel_share_holds_over_several_orders_and_channels(tmp_path, strategy):
    from router.run import solve_scenario

    orders = [web_order(2, f"w{i}") for i in range(3)] + [
        web_order(2, f"m{i}", "market") for i in range(3)
    ]
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=POOL,
        orders=orders,
        profiles={"web": {"channel_share": 0.3}, "market": {"channel_share": 0.7}},
    )
    out = solve_scenario(load_scenario(folder), strategy=strategy)  # checked inside
    rows = out.assignments
    sold = rows.assign(channel=rows["order_id"].str[0]).groupby("channel")["qty"].sum()
    assert sold.to_dict() == {"m": 6, "w": 3}


def test_checker_flags_a_channel_over_its_share(tmp_path):
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=POOL,
        orders=[web_order(5)],
        profiles={"web": {"channel_share": 0.3}},
    )
    scenario = load_scenario(folder)
    rows = pd.DataFrame({"order_id": ["o1"], "line_id": ["l1"], "node_id": ["W"], "qty": [4]})
    report = check(scenario, rows)
    assert [v.rule for v in report.violations] == ["channel_share"]
    assert "sellable 3" in report.violations[0].message
    rows["qty"] = 3
    assert check(scenario, rows).feasible


# --- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"channel_share": 1.5}, r"^channel_share: must be a number >= 0 and <= 1"),
        ({"channel_share": -0.1}, r"^channel_share: must be a number >= 0"),
        ({"channel_share": "60%"}, r"^channel_share: must be a number >= 0"),
        ({"reserved": {"a": -1}}, r"^reserved\.a: must be an integer >= 0"),
        ({"reserved": {"a": 1.5}}, r"^reserved\.a: must be an integer >= 0"),
        ({"reserved": [1]}, r"^reserved: must be a JSON object"),
        ({"low_stock_threshold": -2}, r"^low_stock_threshold: must be an integer >= 0"),
        ({"low_stock_threshold": {"*": "x"}}, r"^low_stock_threshold\.\*: must be an integer"),
    ],
)
def test_bad_share_values_name_the_field(profile, message):
    with pytest.raises(ProfileError, match=message):
        parse_profile(profile)


def test_the_default_profile_cannot_reserve(tmp_path):
    doc = {
        "format": "omniroute-profiles/1",
        "as_of": "2026-12-02T10:00:00Z",
        "profiles": {"default": {"reserved": {"a": 1}}},
    }
    with pytest.raises(ProfileError, match=r"^profiles\.default\.reserved: units are reserved"):
        parse_profile_set(doc)
    folder = write_profiled(
        tmp_path / "s",
        nodes=NODES,
        inventory=POOL,
        orders=[web_order(1)],
        profiles={"web": {"channel_share": 2}},
    )
    with pytest.raises(ScenarioError, match=r"^profiles\.json: profiles\.web\.channel_share"):
        load_scenario(folder)
