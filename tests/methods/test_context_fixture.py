
from tests.conftest import tiny_context


def test_tiny_context_is_consistent(tmp_path):
    ctx, targets = tiny_context(tmp_path)
    n = ctx.store.meta["n"]
    assert ctx.neighbours.shape == (n, 3) and ctx.neighbour_scores.shape == (n, 3)
    assert ctx.metadata.shape[0] == n and ctx.multicnn.shape == (n, 3)
    split = ctx.store.index["split"].to_numpy()
    for i in range(n):
        assert all(split[j] == split[i] and (targets[j] == targets[i]).all() for j in ctx.neighbours[i] if j >= 0)
    assert set(ctx.rows("train")).isdisjoint(ctx.rows("test"))
