"""Region colours of an albedo against the model's prior (dfmvr_lib.face_model.albedo_range)."""
import pytest
import torch

from dfmvr_lib.config import get_config
from dfmvr_lib.face_model.albedo_range import (ALBEDO_REGIONS, albedo_in_range, albedo_prior_range,
                                               colour_distance, region_colours)
from dfmvr_lib.face_model.factory import load_face_model


@pytest.fixture(scope="module")
def model():
    return load_face_model(get_config("smoke").face_model)


@pytest.fixture(scope="module")
def prior(model):
    return albedo_prior_range(model)


def test_the_mean_albedo_is_inside_every_region_and_fresh_prior_draws_at_the_coverage_rate(model, prior):
    mean = albedo_in_range(model, torch.zeros(model.num_albedo), prior)
    assert set(mean.region) == set(ALBEDO_REGIONS) and mean.inside.all()
    draws = torch.randn(400, model.num_albedo, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        colours = region_colours(model, draws)
    rate = torch.tensor([(colour_distance(prior, region, colour) <= prior[region]["limit"]).double().mean()
                         for region, colour in colours.items()])   # the range was built for 99 % coverage
    assert (rate > 0.96).all() and (rate < 1.0).any(), rate


def test_a_lip_colour_pushed_far_along_its_strongest_component_is_flagged_and_only_there(model, prior):
    zero = torch.zeros(1, model.num_albedo)
    base = region_colours(model, zero)
    change = []
    for k in range(model.num_albedo):
        one = zero.clone()
        one[0, k] = 1.0
        colours = region_colours(model, one)
        lips = (colours["lips"] - base["lips"]).norm()
        skin = (colours["skin"] - base["skin"]).norm()
        change.append(float(lips - 3 * skin))           # a component that moves the lips, not the skin
    k = max(range(model.num_albedo), key=change.__getitem__)
    albedo = zero.clone()
    albedo[0, k] = -8.0
    table = albedo_in_range(model, albedo, prior).set_index("region")
    assert not table.loc["lips", "inside"] and table.loc["lips", "distance"] > table.loc["lips", "limit"]
    assert table.loc["skin", "inside"]


def test_bad_albedo_shapes_and_coverage_are_refused(model):
    with pytest.raises(ValueError, match="albedo must be"):
        region_colours(model, torch.zeros(model.num_albedo + 1)[None, :])
    with pytest.raises(ValueError, match="coverage"):
        albedo_prior_range(model, coverage=1.0)
