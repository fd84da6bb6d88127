"""Every error a user can fix derives from RaypipeError and keeps its standard base."""

from __future__ import annotations

import pytest

from pipelines.cli import UserError
from pipelines.config import ConfigError
from pipelines.errors import RaypipeError
from pipelines.expressions import ExpressionError
from pipelines.features.fit import FeatureConfigError
from pipelines.features.pipeline import MissingColumnsError
from pipelines.runner import MissingStageError
from pipelines.serving.protocols.common import RequestError
from pipelines.sources._errors import InputError
from pipelines.stages.batch import UnscorableRowsError
from pipelines.stages.split import SplitError
from pipelines.stages.validate import ContractError
from pipelines.storage.shared import SharedStorageError

USER_ERRORS: list[tuple[type[Exception], type[Exception]]] = [
    (ConfigError, ValueError),
    (SharedStorageError, ConfigError),
    (SplitError, ValueError),
    (UnscorableRowsError, ValueError),
    (ContractError, ValueError),
    (FeatureConfigError, ValueError),
    (MissingColumnsError, ValueError),
    (MissingStageError, RuntimeError),
    (InputError, ValueError),
    (ExpressionError, ValueError),
    (UserError, Exception),
]


@pytest.mark.parametrize(("cls", "old_base"), USER_ERRORS, ids=lambda c: c.__name__)
def test_user_errors_derive_from_raypipe_error_and_keep_their_base(
        cls: type[Exception], old_base: type[Exception]) -> None:
    assert issubclass(cls, RaypipeError)
    assert issubclass(cls, old_base)
    with pytest.raises(old_base):  # code catching the old base still catches it
        raise cls("x")


def test_a_request_error_is_an_http_answer_not_a_user_error() -> None:
    assert not issubclass(RequestError, RaypipeError)
