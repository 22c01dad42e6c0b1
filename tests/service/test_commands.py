"""``omniroute keys create`` and ``omniroute load`` through a typer app of their own
(``serve`` runs for real in test_concurrency)."""

from __future__ import annotations

from typer.testing import CliRunner

from router.generate import generate_scenario
from router.pool import Pool
from router.pool.routing import Order, OrderLine
from router.scenario import load_scenario


def test_keys_create_prints_a_key_that_authenticates(cli, sqlite_url):
    result = CliRunner().invoke(
        cli, ["keys", "create", "--role", "oms", "--database-url", sqlite_url]
    )
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    pool = Pool.open(sqlite_url)
    try:
        assert pool.authenticate(key).role == "oms"
        assert pool.authenticate(key + "x") is None
    finally:
        pool.close()


def test_keys_create_rejects_an_unknown_role(cli, sqlite_url):
    result = CliRunner().invoke(
        cli, ["keys", "create", "--role", "root", "--database-url", sqlite_url]
    )
    assert result.exit_code == 2 and "role" in result.output


def test_load_puts_a_scenario_into_the_pool(cli, sqlite_url, tmp_path):
    folder = tmp_path / "scn"
    generate_scenario(folder, orders=20, stores=15, warehouses=2, skus=30, seed=3)
    result = CliRunner().invoke(cli, ["load", str(folder), "--database-url", sqlite_url])
    assert result.exit_code == 0, result.output
    scenario = load_scenario(folder)
    pool = Pool.open(sqlite_url)
    try:
        model = pool.read_model()
        assert model.index.size == len(scenario.nodes)
        assert model.policy.unfilled_penalty == scenario.unfilled_penalty
        sku = scenario.inventory.sku.iloc[0]
        (found,) = pool.availability([sku])
        assert found.pooled_available == int(
            scenario.inventory.loc[scenario.inventory.sku == sku, "available"].sum()
        )
        # loading again updates in place
        again = CliRunner().invoke(cli, ["load", str(folder), "--database-url", sqlite_url])
        assert again.exit_code == 0 and pool.read_model(force=True).index.size == model.index.size
        first = scenario.orders.iloc[0]
        routed = pool.route(
            Order(
                str(first.order_id),
                (OrderLine("l", str(first.sku), 1),),
                lat=float(first.lat),
                lon=float(first.lon),
            )
        )
        assert routed.status in ("filled", "unfilled")
    finally:
        pool.close()


def test_load_names_the_broken_file(cli, sqlite_url, tmp_path):
    result = CliRunner().invoke(
        cli, ["load", str(tmp_path / "missing"), "--database-url", sqlite_url]
    )
    assert result.exit_code == 2 and "missing" in result.output
