"""Registries: one get() per family accepting a name, an alias, an instance, a class or a config
dict; unknown names raise ValueError listing the valid ones."""
import pytest

from cutedl import activations, initializers, losses, metrics, optimizers, regularizers, schedules
from cutedl._registry import Configurable, Registry, normalize_name


class _Base(Configurable):
    def __init__(self, size: int = 1):
        self.size = size

    def get_config(self) -> dict:
        return {"size": self.size}


def _registry():
    reg = Registry("widget", _Base)

    @reg.register("small_widget", "small", "tiny-widget")
    class Small(_Base):
        pass

    @reg.register("big_widget")
    class Big(_Base):
        pass

    return reg, Small, Big


def test_normalize_name():
    assert normalize_name("  Leaky-ReLU ") == "leaky_relu"
    assert normalize_name("Small Widget") == "small_widget"


def test_get_by_name_alias_and_case():
    reg, Small, Big = _registry()
    assert type(reg.get("small_widget")) is Small
    assert type(reg.get("SMALL")) is Small
    assert type(reg.get("Tiny-Widget")) is Small
    assert type(reg.get("big_widget", size=3)) is Big and reg.get("big_widget", size=3).size == 3
    assert Small.registry_name == "small_widget"


def test_get_instance_class_and_config_dict():
    reg, Small, Big = _registry()
    w = Big(size=4)
    assert reg.get(w) is w
    assert type(reg.get(Small)) is Small
    cfg = reg.serialize(w)
    assert cfg == {"class_name": "big_widget", "config": {"size": 4}}
    back = reg.get(cfg)
    assert back == w and back is not w
    assert reg.deserialize({"class_name": "small"}).size == 1
    with pytest.raises(TypeError, match="Cannot pass options"):
        reg.get(w, size=2)


def test_names_and_classes():
    reg, Small, Big = _registry()
    assert reg.names() == ["small_widget", "big_widget"]
    assert reg.all_names() == ["big_widget", "small", "small_widget", "tiny_widget"]
    assert reg.classes() == {"small_widget": Small, "big_widget": Big}


def test_unknown_name_lists_valid_names():
    reg, _, _ = _registry()
    with pytest.raises(ValueError, match=r"Unknown widget 'medium'\. Valid widget names: big_widget, small, "
                                         r"small_widget, tiny_widget\."):
        reg.get("medium")


def test_bad_identifiers():
    reg, _, _ = _registry()
    with pytest.raises(TypeError, match=r"Cannot interpret None as a widget: pass a name \(small_widget, big_widget\)"):
        reg.get(None)
    with pytest.raises(TypeError, match="Cannot interpret 3"):
        reg.get(3)
    with pytest.raises(TypeError, match="widget name must be a string, got int"):
        reg.lookup(3)
    with pytest.raises(ValueError, match="must be a dict with 'class_name'"):
        reg.deserialize({"config": {}})
    with pytest.raises(ValueError, match="config for 'small' must be a dict"):
        reg.deserialize({"class_name": "small", "config": [1]})
    with pytest.raises(ValueError, match="Unknown widget 'os.system'"):
        reg.deserialize({"class_name": "os.system"})


def test_a_name_cannot_be_registered_twice():
    reg, _, _ = _registry()
    with pytest.raises(ValueError, match="widget name 'small' is already registered"):
        @reg.register("other", "small")
        class Other(_Base):
            pass


def test_configurable_equality_and_repr():
    a, b, c = _Base(2), _Base(2), _Base(3)
    assert a == b and hash(a) == hash(b) and a != c
    assert repr(a) == "_Base(size=2)"


@pytest.mark.parametrize("family, name", [
    (activations, "relu"), (initializers, "he_normal"), (losses, "mse"), (metrics, "accuracy"),
    (optimizers, "adam"), (regularizers, "l2"),
])
def test_every_family_resolves_names_and_lists_valid_ones(family, name):
    assert isinstance(family.get(name), family.registry.base)
    assert isinstance(family.get(name.upper()), family.registry.base)
    with pytest.raises(ValueError, match=rf"Unknown .*'no_such_name'\. Valid .* names: .*{name}"):
        family.get("no_such_name")


def test_family_defaults_for_none():
    assert activations.get(None).is_linear
    assert isinstance(initializers.get(None), initializers.GlorotUniform)
    assert regularizers.get(None) is None
    with pytest.raises(TypeError, match="None is not an optimizer"):
        optimizers.get(None)


def test_schedules_round_trip_through_the_registry():
    s = schedules.StepDecay(0.1, decay_steps=10)
    assert schedules.deserialize(schedules.serialize(s)) == s
