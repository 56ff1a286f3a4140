"""Beckn NACK errors (NFH-008 codes) raised anywhere and turned into a NACK by the HTTP layer."""

from __future__ import annotations


class BecknError(Exception):
    """A request we refuse. `status` is the HTTP status, `code` the NFH-008 string code."""

    def __init__(self, code: str, message: str, status: int = 400, paths: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.paths = paths


# NFH-008 codes used by the CDS (reference: beckn-protocol.md §6.3).
CTX_MISSING_FIELD = "CTX_MISSING_FIELD"
CTX_INVALID_FIELD = "CTX_INVALID_FIELD"
CTX_ACTION_MISMATCH = "CTX_ACTION_MISMATCH"
CTX_VERSION_UNSUPPORTED = "CTX_VERSION_UNSUPPORTED"
CTX_TTL_EXPIRED = "CTX_TTL_EXPIRED"
CTX_TRANSACTION_ID_UNKNOWN = "CTX_TRANSACTION_ID_UNKNOWN"
CTX_CALLBACK_URL_MISSING = "CTX_CALLBACK_URL_MISSING"
AUT_SIGNATURE_MISSING = "AUT_SIGNATURE_MISSING"
AUT_SIGNATURE_INVALID = "AUT_SIGNATURE_INVALID"
AUT_SUBSCRIBER_NOT_FOUND = "AUT_SUBSCRIBER_NOT_FOUND"
AUT_KEY_NOT_FOUND = "AUT_KEY_NOT_FOUND"
AUT_KEY_EXPIRED_OR_REVOKED = "AUT_KEY_EXPIRED_OR_REVOKED"
AUT_UNAUTHORIZED_ACTION = "AUT_UNAUTHORIZED_ACTION"
AUT_RATE_LIMITED = "AUT_RATE_LIMITED"
SCH_INVALID_JSON = "SCH_INVALID_JSON"
SCH_SCHEMA_VALIDATION_FAILED = "SCH_SCHEMA_VALIDATION_FAILED"
SCH_REQUIRED_FIELD_MISSING = "SCH_REQUIRED_FIELD_MISSING"
SCH_INVALID_JSONPATH = "SCH_INVALID_JSONPATH"
SCH_INVALID_FORMAT = "SCH_INVALID_FORMAT"
SCH_TYPE_NOT_SUPPORTED = "SCH_TYPE_NOT_SUPPORTED"
NET_OVERLOADED = "NET_OVERLOADED"
NET_INTERNAL_ERROR = "NET_INTERNAL_ERROR"
NET_DOWNSTREAM_UNAVAILABLE = "NET_DOWNSTREAM_UNAVAILABLE"


def schema_error(message: str, paths: str | None = None, code: str = SCH_SCHEMA_VALIDATION_FAILED) -> BecknError:
    return BecknError(code, message, 400, paths)


def jsonpath_error(message: str, paths: str = "message.filters.expression") -> BecknError:
    return BecknError(SCH_INVALID_JSONPATH, message, 400, paths)
