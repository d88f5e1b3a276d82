from pathlib import Path

from storesync.config import NetworkConfig

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_example_network_config_is_valid() -> None:
    net = NetworkConfig.load(ROOT / "storesync.example.toml")
    assert [m.id for m in net.merchants] == ["acme"]
    kinds = [s.credential_kind for s in net.merchants[0].stores]
    assert kinds == ["client_credentials", "client_credentials", "authorization_code", "static"]
