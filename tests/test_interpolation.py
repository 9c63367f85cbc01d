import math

import torch

from harness.diffusion.interpolation import slerp, slerp_grid, slerp_line


def test_slerp_endpoints_and_angle():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(3, 8, 8, generator=g), torch.randn(3, 8, 8, generator=g)
    x1 = x1 * x0.norm() / x1.norm()  # on one sphere the arc is traversed at constant speed
    torch.testing.assert_close(slerp(x0, x1, 0.0), x0)
    torch.testing.assert_close(slerp(x0, x1, 1.0), x1)

    def angle(a, b):
        return math.acos(float((a * b).sum() / (a.norm() * b.norm())))

    theta = angle(x0, x1)
    mid = slerp(x0, x1, 0.3)
    assert abs(angle(x0, mid) - 0.3 * theta) < 1e-5
    assert abs(angle(mid, x1) - 0.7 * theta) < 1e-5


def test_slerp_line_and_grid_shapes_and_corners():
    g = torch.Generator().manual_seed(1)
    corners = torch.randn(4, 1, 8, 8, generator=g)
    line = slerp_line(corners[0], corners[1], [i / 10 for i in range(11)])
    assert line.shape == (11, 1, 8, 8)
    grid = slerp_grid(corners, [0.0, 0.5, 1.0], [0.0, 0.25, 1.0])
    assert grid.shape == (3, 3, 1, 8, 8)
    torch.testing.assert_close(grid[0, 0], corners[0])
    torch.testing.assert_close(grid[0, -1], corners[1])
    torch.testing.assert_close(grid[-1, 0], corners[2])
    torch.testing.assert_close(grid[-1, -1], corners[3])
    # Row 0 is the (a0, a1) line under the column coefficients.
    torch.testing.assert_close(grid[0, 1], slerp(corners[0], corners[1], 0.25))
