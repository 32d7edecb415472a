// SO_PEERCRED for Node: the pid, uid and gid the kernel recorded for the
// process that connected to a Unix socket, at connect() time. Node's net
// module has no way to ask; this is the one call berth needs, on the fd of an
// accepted admin connection. It needs no capability and no /proc access.
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <string.h>
#include <sys/socket.h>

static napi_value set_int(napi_env env, napi_value obj, const char *key, int64_t value) {
  napi_value v;
  napi_create_int64(env, value, &v);
  napi_set_named_property(env, obj, key, v);
  return obj;
}

// peercred(fd) -> { pid, uid, gid }; throws with errno's text (EBADF, ENOTSOCK, ...).
static napi_value peercred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "peercred(fd): fd must be an integer");
    return NULL;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  napi_value out;
  napi_create_object(env, &out);
  set_int(env, out, "pid", cred.pid);
  set_int(env, out, "uid", cred.uid);
  return set_int(env, out, "gid", cred.gid);
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "peercred", NAPI_AUTO_LENGTH, peercred, NULL, &fn);
  napi_set_named_property(env, exports, "peercred", fn);
  return exports;
}
