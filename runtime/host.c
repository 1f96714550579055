/* host.c: fmadiolua, the LuaJIT host every pushcap script runs in.
 *
 * It runs a script given as the first argument (which is also how a
 * "#!/usr/bin/env fmadiolua" shebang arrives), sets the global arg table
 * the way the stock luajit does, and puts the project's lua/ tree first on
 * package.path.  The pc_* primitives are linked into this executable and
 * exported (-rdynamic) so that ffi.C reaches them without a shared library. */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <luajit.h>

#include "pushcap.h"

static void usage(FILE *f)
{
	fputs("usage: fmadiolua SCRIPT [ARGS...]\n"
	      "       fmadiolua -e CODE [ARGS...]\n"
	      "Runs a Lua script under LuaJIT with the pushcap modules on package.path\n"
	      "and the pc_* C primitives reachable through ffi.C (see runtime/pushcap.h).\n"
	      "Environment: PUSHCAP_ROOT moves every appliance path (/opt/fmadio, /mnt/store0)\n"
	      "under that directory.\n", f);
}

/* The lua/ tree sits beside bin/ both in the checkout (build/../lua) and in
 * an install (PREFIX/bin/../lua), so it is found from our own location. */
static void set_package_path(lua_State *L)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return;
	exe[n] = 0;
	const char *dir = dirname(exe);
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "path");
	const char *old = lua_tostring(L, -1);
	lua_pushfstring(L, "%s/../lua/?.lua;%s/../lua/?/init.lua;%s", dir, dir, old ? old : "");
	lua_setfield(L, -3, "path");
	lua_pop(L, 2);
	lua_pushstring(L, dir);
	lua_setglobal(L, "PUSHCAP_BINDIR");
}

static void set_args(lua_State *L, char **argv, int argc, int script_at)
{
	lua_createtable(L, argc - script_at, script_at + 1);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - script_at);
	}
	lua_setglobal(L, "arg");
}

static int traceback(lua_State *L)
{
	if (lua_isnoneornil(L, 1))
		return 1; /* error() with no message: a quiet non-zero exit (busted uses it) */
	const char *msg = lua_tostring(L, 1);
	luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	lua_State *L = luaL_newstate();
	if (!L) {
		fputs("fmadiolua: cannot create Lua state (out of memory)\n", stderr);
		return 1;
	}
	luaL_openlibs(L);
	set_package_path(L);

	int script_at = 1, rc;
	lua_pushcfunction(L, traceback);
	if (!strcmp(argv[1], "-e")) {
		if (argc < 3) {
			usage(stderr);
			return 2;
		}
		script_at = 2;
		rc = luaL_loadbuffer(L, argv[2], strlen(argv[2]), "=(command line)");
	} else {
		rc = luaL_loadfile(L, argv[1]);
	}
	if (rc) {
		fprintf(stderr, "fmadiolua: %s\n", lua_tostring(L, -1));
		lua_close(L);
		return 1;
	}
	set_args(L, argv, argc, script_at);
	int nargs = 0;
	for (int i = script_at + 1; i < argc; i++, nargs++)
		lua_pushstring(L, argv[i]);
	rc = lua_pcall(L, nargs, 0, -2 - nargs);
	if (rc) {
		if (!lua_isnil(L, -1))
			fprintf(stderr, "fmadiolua: %s\n", lua_tostring(L, -1));
		lua_close(L);
		return 1;
	}
	fflush(stdout);
	lua_close(L);
	return 0;
}
