"""WeChat's error codes and messages, so every answer of the fake reads like the real one."""

OK = 0
SYSTEM_BUSY = -1
INVALID_CREDENTIAL = 40001
INVALID_GRANT_TYPE = 40002
INVALID_OPENID = 40003
INVALID_APPID = 40013
INVALID_TEMPLATE_ID = 40037
INVALID_APPSECRET = 40125
TOKEN_MISSING = 41001
APPID_MISSING = 41002
APPSECRET_MISSING = 41004
TOKEN_EXPIRED = 42001
REQUIRE_SUBSCRIBE = 43004
USER_BLACKLISTED = 43019
DATA_FORMAT_ERROR = 47001
ARGUMENT_INVALID = 47003

ERRMSG: dict[int, str] = {
    OK: "ok",
    SYSTEM_BUSY: "system error",
    INVALID_CREDENTIAL: "invalid credential, access_token is invalid or not latest",
    INVALID_GRANT_TYPE: "invalid grant_type",
    INVALID_OPENID: "invalid openid",
    INVALID_APPID: "invalid appid",
    INVALID_TEMPLATE_ID: "invalid template_id",
    INVALID_APPSECRET: "invalid appsecret",
    TOKEN_MISSING: "access_token missing",
    APPID_MISSING: "appid missing",
    APPSECRET_MISSING: "appsecret missing",
    TOKEN_EXPIRED: "access_token expired",
    REQUIRE_SUBSCRIBE: "require subscribe",
    USER_BLACKLISTED: "user in blacklist",
    DATA_FORMAT_ERROR: "data format error",
    ARGUMENT_INVALID: "argument invalid!",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
}


def errmsg(code: int) -> str:
    """Return WeChat's wording for a code, or a generic one for codes it does not list here."""
    return ERRMSG.get(code, f"injected error {code}")
