import pytest

from femurseg.registry import Registry


def test_register_create_and_list():
    registry = Registry("thing")

    @registry.register("double")
    def double(x: int) -> int:
        return 2 * x

    assert registry.create("double", x=4) == 8
    assert registry.names() == ["double"]
    assert "double" in registry and len(registry) == 1


def test_unknown_name_lists_valid_names_and_nearest():
    registry = Registry("net")
    registry.register("unet3d", object)
    registry.register("vnet3d", object)
    with pytest.raises(KeyError) as error:
        registry.get("unet3")
    message = str(error.value)
    assert "unknown net 'unet3'" in message
    assert "did you mean 'unet3d'" in message
    assert "unet3d, vnet3d" in message


def test_wrong_keyword_names_the_component_and_what_it_takes():
    # e.g. quickstart.yaml's loss_kwargs {dice_weight: 0} kept while switching --model.loss to focal
    from femurseg.models.losses import LOSSES

    with pytest.raises(TypeError, match=r"loss 'focal' cannot be built with \['dice_weight'\].*takes: gamma, class_weights"):
        LOSSES.create("focal", dice_weight=0.0)
    assert LOSSES.create("focal", gamma=1.0).gamma == 1.0

    registry = Registry("thing")

    @registry.register("inner_error")
    def inner_error(x: int) -> int:
        raise TypeError("raised inside the constructor")

    with pytest.raises(TypeError, match="raised inside the constructor"):  # not masked by the keyword check
        registry.create("inner_error", x=1)


def test_duplicate_name_raises():
    registry = Registry("net")
    registry.register("a", int)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", float)
    registry.register("a", int)  # re-registering the same object is harmless


@pytest.mark.parametrize("name", ["UNet", "u-net", "3dunet", ""])
def test_names_must_be_lower_snake(name):
    with pytest.raises(ValueError, match="lower_snake"):
        Registry("net").register(name, int)


def test_dotted_path_imports_unregistered_class():
    registry = Registry("net")
    assert registry.get("collections.OrderedDict").__name__ == "OrderedDict"
    with pytest.raises(ImportError, match="no attribute"):
        registry.get("collections.NoSuchThing")


def test_entry_point_plugin_is_discovered_on_first_use(monkeypatch):
    from importlib.metadata import EntryPoint

    import femurseg.registry as registry_module

    fake = EntryPoint(name="plugin_net", value="collections:Counter", group="test.nets")
    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return [fake] if group == "test.nets" else []

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    registry = Registry("net", entry_point_group="test.nets")
    registry.register("builtin", dict)
    assert calls == []  # nothing read before first use
    assert registry.get("plugin_net").__name__ == "Counter"
    assert registry.names() == ["builtin", "plugin_net"]
    assert calls == ["test.nets"]  # read once


def test_broken_plugin_names_itself(monkeypatch):
    from importlib.metadata import EntryPoint

    import femurseg.registry as registry_module

    broken = EntryPoint(name="broken", value="no_such_package.nets:Net", group="g")
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [broken])
    with pytest.raises(ImportError, match="plugin 'broken'"):
        Registry("net", entry_point_group="g").names()


def test_metadata_is_declared_at_registration():
    registry = Registry("thing", metadata_type=dict)
    registry.register("plain", int)
    registry.register("described", float, metadata={"fast": True})
    assert registry.metadata("plain") == {} and registry.metadata("described") == {"fast": True}
    registry.register("described", float)  # re-registering without metadata keeps the declaration
    assert registry.metadata("described") == {"fast": True}
    assert registry.metadata("builtins.float") == {"fast": True}  # a dotted path to a registered object
    with pytest.raises(TypeError, match="metadata must be dict"):
        registry.register("wrong", str, metadata=["fast"])
    with pytest.raises(TypeError, match="no metadata"):
        Registry("loss").register("x", int, metadata={"a": 1})
    with pytest.raises(KeyError, match="unknown thing"):
        registry.metadata("nothing")
