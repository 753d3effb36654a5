"""The error registry: one class per code, codes unique, every error survives pickling."""

from __future__ import annotations

import pickle

import pytest

from ecrstore import errors


def all_classes(cls=errors.EcrError):
    for sub in cls.__subclasses__():
        yield sub
        yield from all_classes(sub)


OWN_CODE = [c for c in all_classes() if "code" in vars(c)]


def test_each_code_has_exactly_one_class():
    codes = [c.code for c in OWN_CODE]
    assert len(codes) == len(set(codes)), sorted(codes)
    assert errors.BY_CODE == {c.code: c for c in OWN_CODE} | {"ServerException": errors.ServerException}


def test_codes_are_the_class_names_ecr_uses():
    for cls in OWN_CODE:
        assert cls.code == cls.__name__, cls


@pytest.mark.parametrize("cls", OWN_CODE, ids=lambda c: c.code)
def test_errors_pickle_with_their_fields(cls):
    extra = {attr: f"value-{attr}" for attr in cls.fields}
    err = cls("a message", **extra)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and back.message == "a message" and back.extra() == extra


def test_unknown_fields_are_refused():
    with pytest.raises(TypeError):
        errors.InvalidParameterException("x", no_such_field=1)


def test_an_unknown_code_becomes_server_exception():
    err = errors.from_code("NoSuchCode", "m")
    assert type(err) is errors.ServerException and err.message == "m"


def test_hash_state_errors_are_server_exceptions_and_value_errors():
    err = errors.HashStateError("bad state")
    assert isinstance(err, errors.ServerException) and isinstance(err, ValueError)
    assert err.code == "ServerException"
