/*
 * purple-receiver: a headless libpurple (Pidgin's core, prpl-jabber) client
 * that plays the RECEIVING user in integration tests.
 *
 * Built in the spirit of libpurple's nullclient example: a GLib main loop,
 * eventloop UI ops, purple_core_init() with a private user directory in a
 * temporary directory, no plugins beyond the protocol plugin.
 *
 *   purple-receiver --jid alice@example.com/purple --password PW
 *                   --host 127.0.0.1 --port 15222 --out DIR
 *                   [--timeout SECONDS] [--decline]
 *                   [--disconnect-after-bytes N] [--ft-proxies LIST] [--debug]
 *
 * stdout carries one JSON object per line (flushed after each line):
 *   {"event":"online","jid":"..."}
 *   {"event":"message","from":"<full jid>","body":"<plain text>","html":"<as libpurple saw it>"}
 *   {"event":"message_error","from":"...","text":"..."}       (an error written into a conversation)
 *   {"event":"notice","title":"...","primary":"...","secondary":"...","text":"..."}
 *        (what a UI would show in a dialog, e.g. "Message delivery to X failed: ..."
 *         or "File transfer from X failed."; informational only)
 *   {"event":"subscription_request","from":"..."}              (always authorized)
 *   {"event":"offer","from":"...","name":"...","size":N}
 *   {"event":"streamhosts","from":"...","sid":"...","hosts":[{"jid":"...","host":"...","port":N},...]}
 *        (a XEP-0065 streamhost offer as it arrived on the wire, before libpurple
 *         tries the hosts in this order; from the "jabber-receiving-xmlnode" signal)
 *   {"event":"declined","from":"...","name":"...","size":N}   (with --decline)
 *   {"event":"received","from":"...","name":"...","size":N,"bytes":N,
 *    "sha256":"<hex of the file on disk>","disk_bytes":N,"method":"s5b"|"ibb","path":"..."}
 *   {"event":"failed","from":"...","name":"...",
 *    "reason":"cancelled local"|"cancelled remote"|"no local file",
 *    "bytes":N,"method":"s5b"|"ibb"|null,"path":"..."}
 *   {"event":"vanishing","bytes":N}                             (then _exit(4))
 *   {"event":"timeout","seconds":N}                             (then exit 3)
 *   {"event":"error","message":"..."}                           (connection error, then exit 2)
 * Anything else libpurple or GLib might print goes to stderr: stdout's file
 * descriptor is duplicated for the JSON lines and fd 1 is pointed at stderr.
 * libpurple's own debug output is written to stderr only with --debug.
 *
 * stdin takes one JSON object per line:
 *   {"cmd":"send","to":"1234@reports.example.com","body":"report"}
 *   {"cmd":"subscribe","to":"1234@reports.example.com"}
 *   {"cmd":"quit"}
 * EOF on stdin, SIGTERM, SIGINT and SIGHUP all mean quit (clean sign-off,
 * exit 0).
 *
 * How the transfer method (SOCKS5 bytestreams or IBB) is detected
 * ---------------------------------------------------------------
 * libpurple 2.x has no accessor for it (JabberSIXfer is private to the
 * jabber prpl), but struct _PurpleXfer is public in libpurple 2.x's ft.h and
 * the jabber prpl starts the two kinds of receive differently (si.c):
 *   - SOCKS5: after connecting to a streamhost it calls
 *     purple_xfer_start(xfer, <connected socket>, NULL, -1), so xfer->fd is a
 *     real descriptor (>= 0) and the core reads the file from that socket
 *     (xfer->ops.read stays NULL: the core's default read() of xfer->fd).
 *   - IBB: the <open/> handler calls purple_xfer_set_read_fnc(xfer, <IBB
 *     buffer reader>) and purple_xfer_start(xfer, -1, NULL, 0), so xfer->fd
 *     is -1 and data is pushed in with purple_xfer_prpl_ready().
 * purple_xfer_start() emits "file-recv-start" *before* it stores the fd, so
 * the fd is read at the first update_progress UI op instead (called after
 * each chunk has been written), or at the end (completion or cancellation)
 * if no chunk arrived; xfer->start_time != 0 tells that the fd is in place.
 * The method is "s5b" when xfer->fd >= 0, else "ibb"; the second signal
 * (xfer->ops.read set or not) is compared with it and a disagreement is
 * reported on stderr.  This ties the method to the very transfer, unlike
 * libpurple's debug lines (e.g. "got %d bytes of data on IBB stream"), which
 * name no transfer and would be ambiguous with several transfers at once.
 *
 * Every offer is accepted (unless --decline) into --out under the offered
 * name made safe (last path component, no control characters or leading
 * dots); a taken name gets -2, -3, ... before its extension.  The file is
 * created with O_EXCL when the offer is accepted, so it exists (empty) from
 * then on, also when the transfer later fails.
 *
 * What libpurple 2.14 does that a test may trip over (seen here):
 *   - An IBB transfer completes only when the sender's <close/> arrives,
 *     even when all `size` bytes are in (libpurple then never answers the
 *     <close/>).  Without <close/> nothing is reported until quit, when the
 *     transfer is reported as failed ("cancelled local").
 *   - A --decline answers the SI offer with <forbidden/> + "Offer Declined".
 *   - With --disconnect-after-bytes over IBB the process vanishes while
 *     handling the <data/> block that crossed N, before libpurple acks it:
 *     that IQ had been delivered, so ejabberd 23.01 never answers it (the
 *     sender needs its own IQ timeout); later IQs to the gone resource get
 *     <service-unavailable/> "User session not found" at once.
 *   - libpurple would look up _stun._udp.<domain> SRV records after the
 *     server's disco#info; SRV/TXT lookups are answered "none" locally here
 *     (see srv_txt_resolve), as are UPnP/NAT-PMP and public-IP discovery
 *     (see ui_prefs_init), so nothing but --host:--port is contacted.
 *
 * Exit codes: 0 clean quit, 2 connection error or bad usage, 3 --timeout
 * reached, 4 vanished on purpose (--disconnect-after-bytes).
 */

#include <purple.h>

#include <glib.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UI_ID "purple-receiver"

/* ------------------------------------------------------------------ */
/* Options and global state                                            */
/* ------------------------------------------------------------------ */

static struct {
	char *jid;
	char *password;
	char *host;
	int port;
	char *out_dir;
	int timeout_sec;
	gboolean decline;
	gint64 disconnect_after; /* -1: never */
	char *ft_proxies;        /* NULL: leave libpurple's default (none) */
	gboolean debug;
} opt = { NULL, NULL, NULL, 5222, NULL, 120, FALSE, -1, NULL, FALSE };

static FILE *json_out;      /* the real stdout */
static GMainLoop *loop;
static PurpleAccount *account;
static char *user_dir;      /* private libpurple user dir, removed at exit */
static int exit_code = 0;
static gboolean quitting = FALSE;
static gboolean online = FALSE;
static gboolean error_reported = FALSE;
static GString *stdin_buf;
static GQueue pending_cmds = G_QUEUE_INIT; /* commands read before sign-on */
static int signals_handle;  /* address used as signal-connect handle */

typedef struct {
	char *path;          /* where we asked libpurple to write the file */
	const char *method;  /* "s5b", "ibb" or NULL while unknown */
	gboolean finished;   /* received/failed already reported */
} XferState;

/* ------------------------------------------------------------------ */
/* JSON output                                                          */
/* ------------------------------------------------------------------ */

static void
json_append_string(GString *s, const char *str)
{
	char *valid = NULL;
	const unsigned char *p;

	if (str == NULL) {
		g_string_append(s, "null");
		return;
	}
	if (!g_utf8_validate(str, -1, NULL)) {
		valid = g_utf8_make_valid(str, -1);
		str = valid;
	}
	g_string_append_c(s, '"');
	for (p = (const unsigned char *)str; *p; p++) {
		switch (*p) {
		case '"':  g_string_append(s, "\\\""); break;
		case '\\': g_string_append(s, "\\\\"); break;
		case '\n': g_string_append(s, "\\n"); break;
		case '\r': g_string_append(s, "\\r"); break;
		case '\t': g_string_append(s, "\\t"); break;
		case '\b': g_string_append(s, "\\b"); break;
		case '\f': g_string_append(s, "\\f"); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				g_string_append_printf(s, "\\u%04x", *p);
			else
				g_string_append_c(s, (char)*p);
		}
	}
	g_string_append_c(s, '"');
	g_free(valid);
}

static GString *
ev_begin(const char *event)
{
	GString *s = g_string_new("{\"event\":");
	json_append_string(s, event);
	return s;
}

static void
ev_str(GString *s, const char *key, const char *value)
{
	g_string_append_c(s, ',');
	json_append_string(s, key);
	g_string_append_c(s, ':');
	json_append_string(s, value);
}

static void
ev_int(GString *s, const char *key, gint64 value)
{
	g_string_append_c(s, ',');
	json_append_string(s, key);
	g_string_append_printf(s, ":%" G_GINT64_FORMAT, value);
}

static void
ev_emit(GString *s)
{
	g_string_append(s, "}\n");
	if (json_out != NULL) {
		fwrite(s->str, 1, s->len, json_out);
		fflush(json_out);
	}
	g_string_free(s, TRUE);
}

static void
note(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void
note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("purple-receiver: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	fflush(stderr);
	va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Minimal JSON reader for the stdin commands: one flat object whose    */
/* string values we want; other values are parsed and skipped.          */
/* ------------------------------------------------------------------ */

typedef struct {
	const char *p;
	const char *end;
} JsonIn;

static void
jin_ws(JsonIn *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n'))
		j->p++;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static gboolean
jin_hex4(JsonIn *j, gunichar *out)
{
	gunichar v = 0;
	int i;
	if (j->end - j->p < 4)
		return FALSE;
	for (i = 0; i < 4; i++) {
		int h = hexval(j->p[i]);
		if (h < 0)
			return FALSE;
		v = (v << 4) | (gunichar)h;
	}
	j->p += 4;
	*out = v;
	return TRUE;
}

/* Parses a JSON string at j->p (which must be at '"'); returns a newly
 * allocated UTF-8 string or NULL on a syntax error. */
static char *
jin_string(JsonIn *j)
{
	GString *s;

	if (j->p >= j->end || *j->p != '"')
		return NULL;
	j->p++;
	s = g_string_new(NULL);
	while (j->p < j->end) {
		char c = *j->p++;
		if (c == '"')
			return g_string_free(s, FALSE);
		if ((unsigned char)c < 0x20)
			break;
		if (c != '\\') {
			g_string_append_c(s, c);
			continue;
		}
		if (j->p >= j->end)
			break;
		c = *j->p++;
		switch (c) {
		case '"': g_string_append_c(s, '"'); break;
		case '\\': g_string_append_c(s, '\\'); break;
		case '/': g_string_append_c(s, '/'); break;
		case 'b': g_string_append_c(s, '\b'); break;
		case 'f': g_string_append_c(s, '\f'); break;
		case 'n': g_string_append_c(s, '\n'); break;
		case 'r': g_string_append_c(s, '\r'); break;
		case 't': g_string_append_c(s, '\t'); break;
		case 'u': {
			gunichar u, lo;
			if (!jin_hex4(j, &u))
				goto fail;
			if (u >= 0xd800 && u <= 0xdbff) {
				if (j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
					j->p += 2;
					if (!jin_hex4(j, &lo) || lo < 0xdc00 || lo > 0xdfff)
						goto fail;
					u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
				} else {
					u = 0xfffd;
				}
			} else if (u >= 0xdc00 && u <= 0xdfff) {
				u = 0xfffd;
			}
			if (u == 0)
				u = 0xfffd; /* no NULs inside C strings */
			g_string_append_unichar(s, u);
			break;
		}
		default:
			goto fail;
		}
	}
fail:
	g_string_free(s, TRUE);
	return NULL;
}

static gboolean jin_skip_value(JsonIn *j, int depth);

static gboolean
jin_skip_value(JsonIn *j, int depth)
{
	char *str;

	if (depth > 32)
		return FALSE;
	jin_ws(j);
	if (j->p >= j->end)
		return FALSE;
	switch (*j->p) {
	case '"':
		str = jin_string(j);
		if (str == NULL)
			return FALSE;
		g_free(str);
		return TRUE;
	case '{':
	case '[': {
		char close = (*j->p == '{') ? '}' : ']';
		gboolean obj = (*j->p == '{');
		j->p++;
		jin_ws(j);
		if (j->p < j->end && *j->p == close) {
			j->p++;
			return TRUE;
		}
		for (;;) {
			if (obj) {
				jin_ws(j);
				str = jin_string(j);
				if (str == NULL)
					return FALSE;
				g_free(str);
				jin_ws(j);
				if (j->p >= j->end || *j->p != ':')
					return FALSE;
				j->p++;
			}
			if (!jin_skip_value(j, depth + 1))
				return FALSE;
			jin_ws(j);
			if (j->p >= j->end)
				return FALSE;
			if (*j->p == ',') {
				j->p++;
				continue;
			}
			if (*j->p == close) {
				j->p++;
				return TRUE;
			}
			return FALSE;
		}
	}
	default: {
		/* number, true, false, null */
		const char *start = j->p;
		while (j->p < j->end && (g_ascii_isalnum(*j->p) || *j->p == '-' || *j->p == '+' || *j->p == '.'))
			j->p++;
		return j->p > start;
	}
	}
}

/* Returns a table key -> string value (only string-valued members), or NULL
 * if the line is not a JSON object. */
static GHashTable *
json_parse_flat_object(const char *line, gsize len)
{
	JsonIn j = { line, line + len };
	GHashTable *t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);

	jin_ws(&j);
	if (j.p >= j.end || *j.p != '{')
		goto fail;
	j.p++;
	jin_ws(&j);
	if (j.p < j.end && *j.p == '}') {
		j.p++;
		goto done;
	}
	for (;;) {
		char *key, *val;
		jin_ws(&j);
		key = jin_string(&j);
		if (key == NULL)
			goto fail;
		jin_ws(&j);
		if (j.p >= j.end || *j.p != ':') {
			g_free(key);
			goto fail;
		}
		j.p++;
		jin_ws(&j);
		if (j.p < j.end && *j.p == '"') {
			val = jin_string(&j);
			if (val == NULL) {
				g_free(key);
				goto fail;
			}
			g_hash_table_replace(t, key, val);
		} else {
			g_free(key);
			if (!jin_skip_value(&j, 0))
				goto fail;
		}
		jin_ws(&j);
		if (j.p >= j.end)
			goto fail;
		if (*j.p == ',') {
			j.p++;
			continue;
		}
		if (*j.p == '}') {
			j.p++;
			break;
		}
		goto fail;
	}
done:
	jin_ws(&j);
	if (j.p != j.end)
		goto fail;
	return t;
fail:
	g_hash_table_destroy(t);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Files and exit                                                       */
/* ------------------------------------------------------------------ */

static void
remove_tree(const char *path)
{
	GDir *dir;
	const char *name;

	if (path == NULL)
		return;
	if (!g_file_test(path, G_FILE_TEST_IS_SYMLINK) && g_file_test(path, G_FILE_TEST_IS_DIR)) {
		dir = g_dir_open(path, 0, NULL);
		if (dir != NULL) {
			while ((name = g_dir_read_name(dir)) != NULL) {
				char *child = g_build_filename(path, name, NULL);
				remove_tree(child);
				g_free(child);
			}
			g_dir_close(dir);
		}
		g_rmdir(path);
	} else {
		g_unlink(path);
	}
}

/* Leaves at once without signing off. */
static void G_GNUC_NORETURN
hard_exit(int code)
{
	if (json_out != NULL)
		fflush(json_out);
	fflush(stderr);
	remove_tree(user_dir);
	_exit(code);
}

static char *
sha256_file(const char *path, gint64 *size_out)
{
	GChecksum *ck;
	FILE *f;
	guchar buf[65536];
	size_t n;
	gint64 total = 0;
	char *hex;

	f = g_fopen(path, "rb");
	if (f == NULL)
		return NULL;
	ck = g_checksum_new(G_CHECKSUM_SHA256);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		g_checksum_update(ck, buf, n);
		total += n;
	}
	if (ferror(f)) {
		fclose(f);
		g_checksum_free(ck);
		return NULL;
	}
	fclose(f);
	hex = g_strdup(g_checksum_get_string(ck));
	g_checksum_free(ck);
	if (size_out)
		*size_out = total;
	return hex;
}

/* A file name from the offer that is safe to use inside --out: the last path
 * component, no control characters, no leading dot, bounded length. */
static char *
safe_file_name(const char *offered)
{
	const char *base = offered ? offered : "";
	const char *p;
	char *valid, *s, *q;

	for (p = base; *p; p++)
		if (*p == '/' || *p == '\\')
			base = p + 1;
	valid = g_utf8_make_valid(base, -1);
	for (q = valid; *q; q++) {
		unsigned char c = (unsigned char)*q;
		if (c < 0x20 || c == 0x7f || c == ':' || c == '*' || c == '?' ||
		    c == '"' || c == '<' || c == '>' || c == '|')
			*q = '_';
	}
	s = g_strstrip(valid);
	while (*s == '.')
		*s++ = '_';
	if (strlen(s) > 200) {
		char *cut = g_utf8_find_prev_char(s, s + 200);
		if (cut != NULL)
			*cut = '\0';
	}
	s = g_strdup(*s ? s : "file");
	g_free(valid);
	return s;
}

/* Creates (O_EXCL) a new file under --out named after the offer, adding -2,
 * -3, ... before the extension when the name is taken, so several offers of
 * one name in one session each get their own file. */
static char *
reserve_path(const char *offered)
{
	char *name = safe_file_name(offered);
	const char *dot = strchr(name + 1, '.');
	char *stem = dot ? g_strndup(name, dot - name) : g_strdup(name);
	const char *ext = dot ? dot : "";
	char *path = NULL;
	int i;

	for (i = 1; i < 10000; i++) {
		char *candidate_name = (i == 1) ? g_strdup(name)
		                                : g_strdup_printf("%s-%d%s", stem, i, ext);
		char *candidate = g_build_filename(opt.out_dir, candidate_name, NULL);
		int fd = g_open(candidate, O_WRONLY | O_CREAT | O_EXCL, 0644);
		g_free(candidate_name);
		if (fd >= 0) {
			close(fd);
			path = candidate;
			break;
		}
		g_free(candidate);
		if (errno != EEXIST)
			break;
	}
	g_free(stem);
	g_free(name);
	return path;
}

/* ------------------------------------------------------------------ */
/* Quit                                                                 */
/* ------------------------------------------------------------------ */

static gboolean
finish_quit_cb(gpointer data)
{
	(void)data;
	g_main_loop_quit(loop);
	return FALSE;
}

static void
request_quit(int code)
{
	if (quitting)
		return;
	quitting = TRUE;
	exit_code = code;
	if (account != NULL && !purple_account_is_disconnected(account)) {
		/* Closes the stream with </stream:stream>; transfers still running
		 * are cancelled locally (and reported as failed). */
		purple_account_disconnect(account);
	}
	g_idle_add(finish_quit_cb, NULL);
}

/* For use inside libpurple callbacks about the connection itself, where
 * destroying the connection would pull it from under the caller: libpurple
 * disconnects the account on its own after a connection error. */
static void
quit_after_connection_loss(int code)
{
	if (quitting)
		return;
	quitting = TRUE;
	exit_code = code;
	g_idle_add(finish_quit_cb, NULL);
}

static gboolean
timeout_cb(gpointer data)
{
	GString *e = ev_begin("timeout");
	(void)data;
	ev_int(e, "seconds", opt.timeout_sec);
	ev_emit(e);
	hard_exit(3);
}

static gboolean
unix_signal_cb(gpointer data)
{
	(void)data;
	request_quit(0);
	return TRUE;
}

/* ------------------------------------------------------------------ */
/* Commands                                                             */
/* ------------------------------------------------------------------ */

static void
cmd_send(const char *to, const char *body)
{
	PurpleConversation *conv;
	char *escaped, *html;

	conv = purple_find_conversation_with_account(PURPLE_CONV_TYPE_IM, to, account);
	if (conv == NULL)
		conv = purple_conversation_new(PURPLE_CONV_TYPE_IM, account, to);
	/* purple_conv_im_send() takes HTML: escape the text, newlines -> <br>. */
	escaped = g_markup_escape_text(body, -1);
	html = purple_strdup_withhtml(escaped);
	purple_conv_im_send(PURPLE_CONV_IM(conv), html);
	g_free(html);
	g_free(escaped);
}

static void
cmd_subscribe(const char *to)
{
	PurpleBuddy *buddy = purple_find_buddy(account, to);
	if (buddy == NULL) {
		PurpleGroup *group = purple_find_group("Buddies");
		if (group == NULL) {
			group = purple_group_new("Buddies");
			purple_blist_add_group(group, NULL);
		}
		buddy = purple_buddy_new(account, to, NULL);
		purple_blist_add_buddy(buddy, NULL, group, NULL);
	}
	/* jabber: roster set + <presence type='subscribe'/> */
	purple_account_add_buddy(account, buddy);
}

static void
handle_command_line(const char *line, gsize len)
{
	GHashTable *t;
	const char *cmd;

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (len == 0)
		return;
	t = json_parse_flat_object(line, len);
	if (t == NULL) {
		note("ignoring a stdin line that is not a JSON object: %.*s", (int)MIN(len, 200), line);
		return;
	}
	cmd = g_hash_table_lookup(t, "cmd");
	if (purple_strequal(cmd, "quit")) {
		request_quit(0);
	} else if (purple_strequal(cmd, "send")) {
		const char *to = g_hash_table_lookup(t, "to");
		const char *body = g_hash_table_lookup(t, "body");
		if (to == NULL || body == NULL)
			note("send needs \"to\" and \"body\"");
		else
			cmd_send(to, body);
	} else if (purple_strequal(cmd, "subscribe")) {
		const char *to = g_hash_table_lookup(t, "to");
		if (to == NULL)
			note("subscribe needs \"to\"");
		else
			cmd_subscribe(to);
	} else {
		note("unknown command: %s", cmd ? cmd : "(none)");
	}
	g_hash_table_destroy(t);
}

static void
dispatch_line(const char *line, gsize len)
{
	if (quitting)
		return;
	if (!online) {
		/* quit works at once; everything else waits for sign-on */
		GHashTable *t = json_parse_flat_object(line, len);
		gboolean is_quit = t && purple_strequal(g_hash_table_lookup(t, "cmd"), "quit");
		if (t)
			g_hash_table_destroy(t);
		if (is_quit)
			request_quit(0);
		else
			g_queue_push_tail(&pending_cmds, g_strndup(line, len));
		return;
	}
	handle_command_line(line, len);
}

static gboolean
stdin_cb(gint fd, GIOCondition cond, gpointer data)
{
	char buf[4096];
	(void)data;
	(void)cond;

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n > 0) {
			char *nl;
			g_string_append_len(stdin_buf, buf, n);
			while ((nl = memchr(stdin_buf->str, '\n', stdin_buf->len)) != NULL) {
				gsize linelen = nl - stdin_buf->str;
				char *line = g_strndup(stdin_buf->str, linelen);
				g_string_erase(stdin_buf, 0, linelen + 1);
				dispatch_line(line, linelen);
				g_free(line);
			}
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return TRUE;
		if (n < 0 && errno == EINTR)
			continue;
		/* EOF (or a read error): a last unterminated line, then quit */
		if (stdin_buf->len > 0) {
			char *line = g_strndup(stdin_buf->str, stdin_buf->len);
			gsize linelen = stdin_buf->len;
			g_string_truncate(stdin_buf, 0);
			dispatch_line(line, linelen);
			g_free(line);
		}
		request_quit(0);
		return FALSE;
	}
}

/* ------------------------------------------------------------------ */
/* Connection and message signals                                      */
/* ------------------------------------------------------------------ */

static void
signed_on_cb(PurpleConnection *gc, gpointer data)
{
	GString *e;
	(void)data;
	if (purple_connection_get_account(gc) != account)
		return;
	online = TRUE;
	e = ev_begin("online");
	ev_str(e, "jid", purple_account_get_username(account));
	ev_emit(e);
	while (!g_queue_is_empty(&pending_cmds)) {
		char *line = g_queue_pop_head(&pending_cmds);
		handle_command_line(line, strlen(line));
		g_free(line);
	}
}

static void
report_error(const char *message)
{
	GString *e;
	if (error_reported)
		return;
	error_reported = TRUE;
	e = ev_begin("error");
	ev_str(e, "message", message);
	ev_emit(e);
}

static void
connection_error_cb(PurpleConnection *gc, PurpleConnectionError err,
                    const gchar *desc, gpointer data)
{
	(void)data;
	(void)err;
	if (purple_connection_get_account(gc) != account || quitting)
		return;
	report_error(desc ? desc : "connection error");
	quit_after_connection_loss(2);
}

static void
signed_off_cb(PurpleConnection *gc, gpointer data)
{
	(void)data;
	if (purple_connection_get_account(gc) != account || quitting)
		return;
	report_error("signed off unexpectedly");
	quit_after_connection_loss(2);
}

/* libpurple hands messages over as HTML: a plain <body/> is escaped and its
 * newlines become <BR> (purple_strdup_withhtml), XHTML-IM stays markup and
 * jabber:x:oob links are appended as <a href>.  For the first case decode
 * exactly (purple_markup_strip_html() would turn tabs into spaces); anything
 * with real markup goes through purple_markup_strip_html(), which keeps
 * link targets as "text (url)". */
static gboolean
is_br_tag(const char *p, int *len)
{
	static const char *const forms[] = { "<br>", "<br/>", "<br />" };
	gsize i;
	for (i = 0; i < G_N_ELEMENTS(forms); i++) {
		gsize n = strlen(forms[i]);
		if (g_ascii_strncasecmp(p, forms[i], n) == 0) {
			*len = (int)n;
			return TRUE;
		}
	}
	return FALSE;
}

static char *
html_to_text(const char *html)
{
	GString *out;
	const char *p;
	int len;

	if (html == NULL)
		return g_strdup("");
	for (p = strchr(html, '<'); p != NULL; p = strchr(p + 1, '<'))
		if (!is_br_tag(p, &len))
			return purple_markup_strip_html(html);
	out = g_string_new(NULL);
	for (p = html; *p; ) {
		const char *ent = purple_markup_unescape_entity(p, &len);
		if (ent != NULL) {
			g_string_append(out, ent);
			p += len;
		} else if (*p == '<' && is_br_tag(p, &len)) {
			g_string_append_c(out, '\n');
			p += len;
		} else {
			g_string_append_c(out, *p++);
		}
	}
	return g_string_free(out, FALSE);
}

static void
received_im_cb(PurpleAccount *acct, char *sender, char *message,
               PurpleConversation *conv, PurpleMessageFlags flags, gpointer data)
{
	GString *e;
	char *plain;
	(void)conv;
	(void)flags;
	(void)data;
	if (acct != account)
		return;
	plain = html_to_text(message);
	e = ev_begin("message");
	ev_str(e, "from", sender);
	ev_str(e, "body", plain);
	ev_str(e, "html", message);
	ev_emit(e);
	g_free(plain);
}

static int
authorization_requested_cb(PurpleAccount *acct, const char *remote_user, gpointer data)
{
	GString *e;
	(void)data;
	if (acct != account)
		return PURPLE_ACCOUNT_RESPONSE_PASS;
	e = ev_begin("subscription_request");
	ev_str(e, "from", remote_user);
	ev_emit(e);
	return PURPLE_ACCOUNT_RESPONSE_ACCEPT;
}

static void
conv_write_conv(PurpleConversation *conv, const char *who, const char *alias,
                const char *message, PurpleMessageFlags flags, time_t mtime)
{
	(void)alias;
	(void)mtime;
	/* Delivery errors (purple_conv_present_error) carry ERROR alone; the
	 * file-transfer notes that libpurple also writes into conversations carry
	 * SYSTEM as well and are reported by the transfer events instead. */
	if ((flags & PURPLE_MESSAGE_ERROR) && !(flags & PURPLE_MESSAGE_SYSTEM)) {
		char *plain = purple_markup_strip_html(message ? message : "");
		GString *e = ev_begin("message_error");
		ev_str(e, "from", who ? who : purple_conversation_get_name(conv));
		ev_str(e, "text", plain);
		ev_emit(e);
		g_free(plain);
	} else if (opt.debug) {
		note("conversation %s: %s", purple_conversation_get_name(conv), message ? message : "");
	}
}

static PurpleConversationUiOps conv_uiops = {
	.write_conv = conv_write_conv,
};

/* ------------------------------------------------------------------ */
/* File transfers                                                       */
/* ------------------------------------------------------------------ */

static XferState *
xfer_state(PurpleXfer *xfer)
{
	if (xfer->ui_data == NULL)
		xfer->ui_data = g_new0(XferState, 1);
	return xfer->ui_data;
}

/* See the comment at the top of this file. */
static void
detect_method(PurpleXfer *xfer)
{
	XferState *st = xfer_state(xfer);
	gboolean socket_backed, prpl_reader;

	/* start_time is set by the core once purple_xfer_start() has stored the
	 * fd (for a receive: right after the prpl's start call). */
	if (st->method != NULL || xfer->start_time == 0)
		return;
	socket_backed = xfer->fd >= 0;
	prpl_reader = xfer->ops.read != NULL;
	st->method = socket_backed ? "s5b" : "ibb";
	if (socket_backed == prpl_reader)
		note("method detection: fd=%d but prpl read function %s; reporting %s",
		     xfer->fd, prpl_reader ? "set" : "unset", st->method);
}

static void
xfer_new(PurpleXfer *xfer)
{
	xfer_state(xfer);
}

static void
xfer_destroy(PurpleXfer *xfer)
{
	XferState *st = xfer->ui_data;
	if (st != NULL) {
		g_free(st->path);
		g_free(st);
		xfer->ui_data = NULL;
	}
}

static void
xfer_update_progress(PurpleXfer *xfer, double percent)
{
	size_t got;
	(void)percent;

	if (purple_xfer_get_type(xfer) != PURPLE_XFER_RECEIVE)
		return;
	detect_method(xfer);
	got = purple_xfer_get_bytes_sent(xfer);
	if (opt.disconnect_after >= 0 && (gint64)got >= opt.disconnect_after &&
	    purple_xfer_get_status(xfer) == PURPLE_XFER_STATUS_STARTED) {
		GString *e = ev_begin("vanishing");
		ev_int(e, "bytes", (gint64)got);
		ev_emit(e);
		hard_exit(4);
	}
}

static void
report_failed(PurpleXfer *xfer, const char *reason)
{
	XferState *st = xfer_state(xfer);
	GString *e;

	if (st->finished)
		return;
	st->finished = TRUE;
	detect_method(xfer);
	e = ev_begin("failed");
	ev_str(e, "from", purple_xfer_get_remote_user(xfer));
	ev_str(e, "name", purple_xfer_get_filename(xfer));
	ev_str(e, "reason", reason);
	ev_int(e, "bytes", (gint64)purple_xfer_get_bytes_sent(xfer));
	ev_str(e, "method", st->method);
	ev_str(e, "path", st->path);
	ev_emit(e);
}

static void
xfer_cancel_local(PurpleXfer *xfer)
{
	report_failed(xfer, "cancelled local");
}

static void
xfer_cancel_remote(PurpleXfer *xfer)
{
	report_failed(xfer, "cancelled remote");
}

static PurpleXferUiOps xfer_uiops = {
	.new_xfer = xfer_new,
	.destroy = xfer_destroy,
	.update_progress = xfer_update_progress,
	.cancel_local = xfer_cancel_local,
	.cancel_remote = xfer_cancel_remote,
};

static void
file_recv_request_cb(PurpleXfer *xfer, gpointer data)
{
	XferState *st = xfer_state(xfer);
	GString *e;
	(void)data;

	if (purple_xfer_get_account(xfer) != account)
		return;

	e = ev_begin("offer");
	ev_str(e, "from", purple_xfer_get_remote_user(xfer));
	ev_str(e, "name", purple_xfer_get_filename(xfer));
	ev_int(e, "size", (gint64)purple_xfer_get_size(xfer));
	ev_emit(e);

	if (opt.decline) {
		st->finished = TRUE;
		e = ev_begin("declined");
		ev_str(e, "from", purple_xfer_get_remote_user(xfer));
		ev_str(e, "name", purple_xfer_get_filename(xfer));
		ev_int(e, "size", (gint64)purple_xfer_get_size(xfer));
		ev_emit(e);
		/* jabber answers the SI offer with <forbidden/> "Offer Declined" */
		purple_xfer_request_denied(xfer);
		return;
	}

	st->path = reserve_path(purple_xfer_get_filename(xfer));
	if (st->path == NULL) {
		note("cannot create a file under %s for %s", opt.out_dir,
		     purple_xfer_get_filename(xfer) ? purple_xfer_get_filename(xfer) : "(no name)");
		report_failed(xfer, "no local file");
		purple_xfer_request_denied(xfer);
		return;
	}
	/* As libpurple's autoaccept plugin does: accept from inside the signal,
	 * which sends the SI result choosing the stream method. */
	purple_xfer_request_accepted(xfer, st->path);
}

static gboolean
report_received_cb(gpointer data)
{
	PurpleXfer *xfer = data;
	XferState *st = xfer_state(xfer);
	const char *path = purple_xfer_get_local_filename(xfer);
	gint64 disk = -1;
	char *sha;
	GString *e;

	if (!st->finished) {
		st->finished = TRUE;
		detect_method(xfer);
		sha = path ? sha256_file(path, &disk) : NULL;
		e = ev_begin("received");
		ev_str(e, "from", purple_xfer_get_remote_user(xfer));
		ev_str(e, "name", purple_xfer_get_filename(xfer));
		ev_int(e, "size", (gint64)purple_xfer_get_size(xfer));
		ev_int(e, "bytes", (gint64)purple_xfer_get_bytes_sent(xfer));
		ev_str(e, "sha256", sha);
		ev_int(e, "disk_bytes", disk);
		ev_str(e, "method", st->method);
		ev_str(e, "path", path);
		ev_emit(e);
		g_free(sha);
	}
	purple_xfer_unref(xfer);
	return FALSE;
}

static void
file_recv_complete_cb(PurpleXfer *xfer, gpointer data)
{
	(void)data;
	if (purple_xfer_get_account(xfer) != account)
		return;
	detect_method(xfer);
	/* "file-recv-complete" is emitted when the status becomes DONE, before
	 * the core has counted the last chunk and closed the file: report from
	 * an idle callback, when purple_xfer_end() has run. */
	purple_xfer_ref(xfer);
	g_idle_add(report_received_cb, xfer);
}

/* ------------------------------------------------------------------ */
/* Other UI ops: everything that would be a dialog goes to stderr       */
/* ------------------------------------------------------------------ */

static void
debug_print(PurpleDebugLevel level, const char *category, const char *arg_s)
{
	(void)level;
	fprintf(stderr, "%s: %s", category ? category : "-", arg_s ? arg_s : "");
	if (arg_s == NULL || *arg_s == '\0' || arg_s[strlen(arg_s) - 1] != '\n')
		fputc('\n', stderr);
}

static gboolean
debug_is_enabled(PurpleDebugLevel level, const char *category)
{
	(void)level;
	(void)category;
	return opt.debug;
}

static PurpleDebugUiOps debug_uiops = {
	.print = debug_print,
	.is_enabled = debug_is_enabled,
};

/* What a UI would show in a dialog (delivery errors of messages, transfer
 * failures, ...) becomes a "notice" event: it explains failures in tests. */
static void
emit_notice(const char *title, const char *primary, const char *secondary,
            const char *text)
{
	GString *e = ev_begin("notice");
	ev_str(e, "title", title);
	ev_str(e, "primary", primary);
	ev_str(e, "secondary", secondary);
	if (text != NULL) {
		char *plain = html_to_text(text);
		ev_str(e, "text", plain);
		g_free(plain);
	}
	ev_emit(e);
}

static void *
notify_message(PurpleNotifyMsgType type, const char *title,
               const char *primary, const char *secondary)
{
	(void)type;
	emit_notice(title, primary, secondary, NULL);
	return NULL;
}

static void *
notify_formatted(const char *title, const char *primary,
                 const char *secondary, const char *text)
{
	emit_notice(title, primary, secondary, text);
	return NULL;
}

static PurpleNotifyUiOps notify_uiops = {
	.notify_message = notify_message,
	.notify_formatted = notify_formatted,
};

static void *
request_action(const char *title, const char *primary, const char *secondary,
               int default_action, PurpleAccount *acct, const char *who,
               PurpleConversation *conv, void *user_data,
               size_t action_count, va_list actions)
{
	(void)default_action; (void)acct; (void)who; (void)conv; (void)user_data;
	(void)action_count; (void)actions;
	note("unanswered request: %s | %s | %s", title ? title : "",
	     primary ? primary : "", secondary ? secondary : "");
	return NULL;
}

static void *
request_input(const char *title, const char *primary, const char *secondary,
              const char *default_value, gboolean multiline, gboolean masked,
              gchar *hint, const char *ok_text, GCallback ok_cb,
              const char *cancel_text, GCallback cancel_cb, PurpleAccount *acct,
              const char *who, PurpleConversation *conv, void *user_data)
{
	(void)default_value; (void)multiline; (void)masked; (void)hint; (void)ok_text;
	(void)ok_cb; (void)cancel_text; (void)cancel_cb; (void)acct; (void)who;
	(void)conv; (void)user_data;
	note("unanswered input request: %s | %s | %s", title ? title : "",
	     primary ? primary : "", secondary ? secondary : "");
	return NULL;
}

static void *
request_fields(const char *title, const char *primary, const char *secondary,
               PurpleRequestFields *fields, const char *ok_text, GCallback ok_cb,
               const char *cancel_text, GCallback cancel_cb, PurpleAccount *acct,
               const char *who, PurpleConversation *conv, void *user_data)
{
	(void)fields; (void)ok_text; (void)ok_cb; (void)cancel_text; (void)cancel_cb;
	(void)acct; (void)who; (void)conv; (void)user_data;
	note("unanswered fields request: %s | %s | %s", title ? title : "",
	     primary ? primary : "", secondary ? secondary : "");
	return NULL;
}

static void *
request_file(const char *title, const char *filename, gboolean savedialog,
             GCallback ok_cb, GCallback cancel_cb, PurpleAccount *acct,
             const char *who, PurpleConversation *conv, void *user_data)
{
	(void)savedialog; (void)ok_cb; (void)cancel_cb; (void)acct; (void)who;
	(void)conv; (void)user_data;
	note("unanswered file request: %s | %s", title ? title : "", filename ? filename : "");
	return NULL;
}

static PurpleRequestUiOps request_uiops = {
	.request_input = request_input,
	.request_action = request_action,
	.request_fields = request_fields,
	.request_file = request_file,
};

/* ------------------------------------------------------------------ */
/* No DNS SRV/TXT lookups: libpurple would send them to the system      */
/* resolver for the account's domain (_stun._udp.example.com after the  */
/* server's disco#info; _xmppconnect TXT after a failed direct          */
/* connect). Everything here is loopback with an explicit host/port.    */
/* ------------------------------------------------------------------ */

static GHashTable *srv_pending; /* PurpleSrvTxtQueryData* -> idle source id */

typedef struct {
	PurpleSrvTxtQueryData *query;
	PurpleSrvTxtQueryFailedCallback failed_cb;
} SrvFail;

static gboolean
srv_fail_cb(gpointer data)
{
	SrvFail *f = data;
	g_hash_table_remove(srv_pending, f->query);
	/* calls the SRV callback with no records, then frees the query */
	f->failed_cb(f->query, "DNS SRV lookups are disabled in purple-receiver");
	return FALSE;
}

static gboolean
srv_txt_resolve(PurpleSrvTxtQueryData *query,
                PurpleSrvTxtQueryResolvedCallback resolved_cb,
                PurpleSrvTxtQueryFailedCallback failed_cb)
{
	(void)resolved_cb;
	if (purple_srv_txt_query_get_type(query) == PurpleDnsTypeTxt) {
		/* Only asked after the direct connection to --host/--port failed.
		 * libpurple's failure path would call the TXT callback with SRV
		 * arguments, so never answer (the query is freed by its owner) and
		 * report the connection failure ourselves. */
		char *msg = g_strdup_printf("Unable to connect to %s:%d", opt.host, opt.port);
		if (!quitting) {
			report_error(msg);
			quit_after_connection_loss(2);
		}
		g_free(msg);
		g_hash_table_insert(srv_pending, query, GUINT_TO_POINTER(0));
	} else {
		SrvFail *f = g_new0(SrvFail, 1);
		guint id;
		f->query = query;
		f->failed_cb = failed_cb;
		/* not from inside resolve(): the caller still stores the query */
		id = g_idle_add_full(G_PRIORITY_DEFAULT_IDLE, srv_fail_cb, f, g_free);
		g_hash_table_insert(srv_pending, query, GUINT_TO_POINTER(id));
	}
	return TRUE;
}

static void
srv_txt_destroy(PurpleSrvTxtQueryData *query)
{
	gpointer id;
	if (g_hash_table_lookup_extended(srv_pending, query, NULL, &id)) {
		if (GPOINTER_TO_UINT(id) != 0)
			g_source_remove(GPOINTER_TO_UINT(id));
		g_hash_table_remove(srv_pending, query);
	}
}

static PurpleSrvTxtQueryUiOps srv_uiops = {
	.resolve = srv_txt_resolve,
	.destroy = srv_txt_destroy,
};

/* ------------------------------------------------------------------ */
/* Event loop (as in nullclient)                                        */
/* ------------------------------------------------------------------ */

#define PURPLE_GLIB_READ_COND  (G_IO_IN | G_IO_HUP | G_IO_ERR)
#define PURPLE_GLIB_WRITE_COND (G_IO_OUT | G_IO_HUP | G_IO_ERR | G_IO_NVAL)

typedef struct {
	PurpleInputFunction function;
	gpointer data;
} IoClosure;

static gboolean
io_invoke(GIOChannel *source, GIOCondition condition, gpointer data)
{
	IoClosure *closure = data;
	PurpleInputCondition purple_cond = 0;

	if (condition & PURPLE_GLIB_READ_COND)
		purple_cond |= PURPLE_INPUT_READ;
	if (condition & PURPLE_GLIB_WRITE_COND)
		purple_cond |= PURPLE_INPUT_WRITE;
	closure->function(closure->data, g_io_channel_unix_get_fd(source), purple_cond);
	return TRUE;
}

static guint
glib_input_add(gint fd, PurpleInputCondition condition,
               PurpleInputFunction function, gpointer data)
{
	IoClosure *closure = g_new0(IoClosure, 1);
	GIOChannel *channel;
	GIOCondition cond = 0;
	guint id;

	closure->function = function;
	closure->data = data;
	if (condition & PURPLE_INPUT_READ)
		cond |= PURPLE_GLIB_READ_COND;
	if (condition & PURPLE_INPUT_WRITE)
		cond |= PURPLE_GLIB_WRITE_COND;
	channel = g_io_channel_unix_new(fd);
	id = g_io_add_watch_full(channel, G_PRIORITY_DEFAULT, cond, io_invoke,
	                         closure, g_free);
	g_io_channel_unref(channel);
	return id;
}

static PurpleEventLoopUiOps eventloop_uiops = {
	.timeout_add = g_timeout_add,
	.timeout_remove = g_source_remove,
	.input_add = glib_input_add,
	.input_remove = g_source_remove,
	.input_get_error = NULL,
	.timeout_add_seconds = g_timeout_add_seconds,
};

/* Runs right after libpurple has loaded (our empty) prefs and before the
 * subsystems register their defaults: a pref added here keeps its value.
 * No UPnP/NAT-PMP discovery or public-IP guessing (they would send packets
 * beyond loopback), no conversation logs. */
static void
ui_prefs_init(void)
{
	purple_prefs_add_none("/purple/network");
	purple_prefs_add_bool("/purple/network/map_ports", FALSE);
	purple_prefs_add_bool("/purple/network/auto_ip", FALSE);
	purple_prefs_add_string("/purple/network/stun_server", "");
	purple_prefs_add_string("/purple/network/turn_server", "");
	purple_prefs_add_none("/purple/logging");
	purple_prefs_add_bool("/purple/logging/log_ims", FALSE);
	purple_prefs_add_bool("/purple/logging/log_chats", FALSE);
	purple_prefs_add_bool("/purple/logging/log_system", FALSE);
}

static void
ui_init(void)
{
	purple_conversations_set_ui_ops(&conv_uiops);
	purple_xfers_set_ui_ops(&xfer_uiops);
	purple_notify_set_ui_ops(&notify_uiops);
	purple_request_set_ui_ops(&request_uiops);
}

static PurpleCoreUiOps core_uiops = {
	.ui_prefs_init = ui_prefs_init,
	.debug_ui_init = NULL,
	.ui_init = ui_init,
	.quit = NULL,
};

/* ------------------------------------------------------------------ */
/* main                                                                 */
/* ------------------------------------------------------------------ */

static void G_GNUC_NORETURN
usage(const char *msg)
{
	if (msg)
		fprintf(stderr, "purple-receiver: %s\n", msg);
	fprintf(stderr,
	        "usage: purple-receiver --jid USER@HOST/RESOURCE --password PW --host HOST --port PORT\n"
	        "                       --out DIR [--timeout SECONDS] [--decline]\n"
	        "                       [--disconnect-after-bytes N] [--ft-proxies LIST] [--debug]\n");
	exit(2);
}

static gint64
parse_int(const char *name, const char *value, gint64 min, gint64 max)
{
	gint64 v;
	GError *err = NULL;
	if (!g_ascii_string_to_signed(value, 10, min, max, &v, &err)) {
		char *m = g_strdup_printf("bad %s: %s", name, err->message);
		usage(m);
	}
	return v;
}

static void
parse_args(int argc, char **argv)
{
	int i;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
#define NEEDS_VALUE() do { if (v == NULL) usage("missing value"); i++; } while (0)
		if (g_str_equal(a, "--jid")) { NEEDS_VALUE(); opt.jid = g_strdup(v); }
		else if (g_str_equal(a, "--password")) { NEEDS_VALUE(); opt.password = g_strdup(v); }
		else if (g_str_equal(a, "--host")) { NEEDS_VALUE(); opt.host = g_strdup(v); }
		else if (g_str_equal(a, "--port")) { NEEDS_VALUE(); opt.port = (int)parse_int(a, v, 1, 65535); }
		else if (g_str_equal(a, "--out")) { NEEDS_VALUE(); opt.out_dir = g_strdup(v); }
		else if (g_str_equal(a, "--timeout")) { NEEDS_VALUE(); opt.timeout_sec = (int)parse_int(a, v, 1, 86400); }
		else if (g_str_equal(a, "--decline")) { opt.decline = TRUE; }
		else if (g_str_equal(a, "--disconnect-after-bytes")) { NEEDS_VALUE(); opt.disconnect_after = parse_int(a, v, 0, G_MAXINT64); }
		else if (g_str_equal(a, "--ft-proxies")) { NEEDS_VALUE(); opt.ft_proxies = g_strdup(v); }
		else if (g_str_equal(a, "--debug")) { opt.debug = TRUE; }
		else if (g_str_equal(a, "--help") || g_str_equal(a, "-h")) { usage(NULL); }
		else { char *m = g_strdup_printf("unknown argument %s", a); usage(m); }
#undef NEEDS_VALUE
	}
	if (!opt.jid || !opt.password || !opt.host || !opt.out_dir)
		usage("--jid, --password, --host and --out are required");
	if (strchr(opt.jid, '@') == NULL || strchr(opt.jid, '/') == NULL)
		usage("--jid must be a full JID: user@host/resource");
}

/* Every stanza libpurple's jabber prpl receives passes here first: report the
 * streamhosts of a bytestreams offer (XEP-0065 §5.3.1) in document order, the
 * order libpurple will try them in (si.c). */
static void
receiving_xmlnode_cb(PurpleConnection *gc, xmlnode **packet, gpointer data)
{
	xmlnode *query, *sh;
	const char *type;
	GString *e;
	gboolean first = TRUE;

	(void)gc;
	(void)data;
	if (packet == NULL || *packet == NULL || g_strcmp0((*packet)->name, "iq") != 0)
		return;
	type = xmlnode_get_attrib(*packet, "type");
	query = xmlnode_get_child_with_namespace(*packet, "query", "http://jabber.org/protocol/bytestreams");
	if (g_strcmp0(type, "set") != 0 || query == NULL || xmlnode_get_child(query, "streamhost") == NULL)
		return;
	e = ev_begin("streamhosts");
	ev_str(e, "from", xmlnode_get_attrib(*packet, "from"));
	ev_str(e, "sid", xmlnode_get_attrib(query, "sid"));
	g_string_append(e, ",\"hosts\":[");
	for (sh = xmlnode_get_child(query, "streamhost"); sh != NULL; sh = xmlnode_get_next_twin(sh)) {
		const char *port = xmlnode_get_attrib(sh, "port");
		if (!first)
			g_string_append_c(e, ',');
		first = FALSE;
		g_string_append(e, "{\"jid\":");
		json_append_string(e, xmlnode_get_attrib(sh, "jid"));
		ev_str(e, "host", xmlnode_get_attrib(sh, "host"));
		ev_int(e, "port", port ? g_ascii_strtoll(port, NULL, 10) : 0);
		g_string_append_c(e, '}');
	}
	g_string_append_c(e, ']');
	ev_emit(e);
}

int
main(int argc, char **argv)
{
	int out_fd;
	PurpleSavedStatus *status;

	parse_args(argc, argv);

	/* The JSON lines get their own copy of stdout; fd 1 becomes stderr so
	 * that nothing else (g_print, stray printf) can corrupt them. */
	out_fd = dup(STDOUT_FILENO);
	if (out_fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
		perror("purple-receiver: dup");
		return 2;
	}
	json_out = fdopen(out_fd, "w");
	if (json_out == NULL) {
		perror("purple-receiver: fdopen");
		return 2;
	}

	/* libpurple's DNS resolver forks helpers and does not reap them. */
	signal(SIGCHLD, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);

	if (g_mkdir_with_parents(opt.out_dir, 0755) != 0) {
		note("cannot create %s: %s", opt.out_dir, g_strerror(errno));
		return 2;
	}
	user_dir = g_dir_make_tmp("purple-receiver-XXXXXX", NULL);
	if (user_dir == NULL) {
		note("cannot create a temporary directory");
		return 2;
	}

	loop = g_main_loop_new(NULL, FALSE);

	purple_util_set_user_dir(user_dir);
	/* Never let libpurple print its debug log itself (it would use g_print);
	 * the debug UI op writes it to stderr when --debug is given. */
	purple_debug_set_enabled(FALSE);
	purple_debug_set_ui_ops(&debug_uiops);
	srv_pending = g_hash_table_new(g_direct_hash, g_direct_equal);
	purple_srv_txt_query_set_ui_ops(&srv_uiops);
	purple_core_set_ui_ops(&core_uiops);
	purple_eventloop_set_ui_ops(&eventloop_uiops);

	if (!purple_core_init(UI_ID)) {
		note("libpurple initialization failed");
		remove_tree(user_dir);
		return 2;
	}
	purple_set_blist(purple_blist_new());
	purple_blist_load();

	if (purple_find_prpl("prpl-jabber") == NULL) {
		note("libpurple has no prpl-jabber (is libpurple0 installed?)");
		remove_tree(user_dir);
		return 2;
	}

	purple_signal_connect(purple_connections_get_handle(), "signed-on",
	                      &signals_handle, PURPLE_CALLBACK(signed_on_cb), NULL);
	purple_signal_connect(purple_connections_get_handle(), "signed-off",
	                      &signals_handle, PURPLE_CALLBACK(signed_off_cb), NULL);
	purple_signal_connect(purple_connections_get_handle(), "connection-error",
	                      &signals_handle, PURPLE_CALLBACK(connection_error_cb), NULL);
	purple_signal_connect(purple_conversations_get_handle(), "received-im-msg",
	                      &signals_handle, PURPLE_CALLBACK(received_im_cb), NULL);
	purple_signal_connect(purple_accounts_get_handle(), "account-authorization-requested",
	                      &signals_handle, PURPLE_CALLBACK(authorization_requested_cb), NULL);
	purple_signal_connect(purple_xfers_get_handle(), "file-recv-request",
	                      &signals_handle, PURPLE_CALLBACK(file_recv_request_cb), NULL);
	purple_signal_connect(purple_xfers_get_handle(), "file-recv-complete",
	                      &signals_handle, PURPLE_CALLBACK(file_recv_complete_cb), NULL);
	purple_signal_connect(purple_find_prpl("prpl-jabber"), "jabber-receiving-xmlnode",
	                      &signals_handle, PURPLE_CALLBACK(receiving_xmlnode_cb), NULL);

	/* The resource is part of the username for prpl-jabber. */
	account = purple_account_new(opt.jid, "prpl-jabber");
	purple_account_set_password(account, opt.password);
	purple_account_set_remember_password(account, FALSE);
	purple_account_set_string(account, "connect_server", opt.host);
	purple_account_set_int(account, "port", opt.port);
	/* libpurple 2.14 option names (libxmpp.c): "require_tls",
	 * "opportunistic_tls" or "old_ssl".  Opportunistic: STARTTLS if the
	 * server offers it, plain TCP otherwise; and PLAIN over plain TCP is
	 * allowed without asking. */
	purple_account_set_string(account, "connection_security", "opportunistic_tls");
	purple_account_set_bool(account, "auth_plain_in_clear", TRUE);
	if (opt.ft_proxies != NULL)
		purple_account_set_string(account, "ft_proxies", opt.ft_proxies);
	purple_accounts_add(account);
	purple_account_set_enabled(account, UI_ID, TRUE);

	/* Activating an "available" saved status connects enabled accounts. */
	status = purple_savedstatus_new(NULL, PURPLE_STATUS_AVAILABLE);
	purple_savedstatus_activate(status);

	stdin_buf = g_string_new(NULL);
	g_unix_set_fd_nonblocking(STDIN_FILENO, TRUE, NULL);
	g_unix_fd_add(STDIN_FILENO, G_IO_IN | G_IO_HUP | G_IO_ERR, stdin_cb, NULL);
	g_unix_signal_add(SIGTERM, unix_signal_cb, NULL);
	g_unix_signal_add(SIGINT, unix_signal_cb, NULL);
	g_unix_signal_add(SIGHUP, unix_signal_cb, NULL);
	g_timeout_add_seconds(opt.timeout_sec, timeout_cb, NULL);

	g_main_loop_run(loop);

	/* Clean sign-off has happened in request_quit(). purple_core_quit()
	 * would save accounts/blist into the temporary user dir we are about to
	 * remove anyway, so it is skipped. */
	fflush(json_out);
	remove_tree(user_dir);
	return exit_code;
}
