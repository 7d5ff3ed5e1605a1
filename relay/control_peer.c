/*
 * control_peer.c - `backmxctl peer`: the mirror link and replication
 * state (relay/mirror.c) as text lines or one JSON object; `backmxctl
 * takeover`: deliver the mail held for the peer now.
 */
#include <stdio.h>

#include "control_int.h"
#include "mirror.h"
#include "peer.h"

static void
control_lsn(char *buf, size_t len, const struct spool_lsn *l)
{
	snprintf(buf, len, "%u/%u", (unsigned)l->file, (unsigned)l->offset);
}

void
control_peer(struct control_client *c)
{
	const struct peer_link_stats *ls = peer_stats();
	struct mirror_status st;
	struct mirror_gate_stats gs;
	struct mirror_takeover_stats ts;
	char sent[32], acked[32], rnext[32], racked[32];

	mirror_status(&st);
	mirror_gate_status(&gs);
	mirror_takeover_status(&ts);
	if (!st.enabled) {
		control_end_err(c, "no peer configured");
		return;
	}
	control_lsn(sent, sizeof(sent), &st.last_sent);
	control_lsn(acked, sizeof(acked), &st.last_acked);
	control_lsn(rnext, sizeof(rnext), &st.replica_next);
	control_lsn(racked, sizeof(racked), &st.replica_acked);
	if (c->req.json) {
		json_buf_printf(
		    &c->out,
		    "+{\"connected\": %s, \"own_link\": %s, \"replica_link\": "
		    "%s, \"last_heard_seconds\": %.1f, \"peer_ack\": \"%s\", "
		    "\"last_sent_lsn\": \"%s\", \"last_acked_lsn\": \"%s\", "
		    "\"lag_messages\": %llu, \"lag_seconds\": %.1f, "
		    "\"replica_in_sync\": %s, \"replica_next_lsn\": \"%s\", "
		    "\"replica_acked_lsn\": \"%s\", \"takeover\": \"%s\", "
		    "\"takeover_after\": %ld, \"acks_sent\": %llu, "
		    "\"acks_received\": %llu, \"replication_errors\": %llu, "
		    "\"connects\": %llu, \"refused\": %llu, "
		    "\"protocol_errors\": %llu, \"gated\": %llu, "
		    "\"gated_acked\": %llu, \"gated_timeouts\": %llu, "
		    "\"gated_waiting\": %llu, \"ack_timeout\": %.0f, "
		    "\"replica_checkpoints\": %llu, \"takeovers\": %llu, "
		    "\"taken_messages\": %llu, \"taken_bytes\": %llu, "
		    "\"taken_already\": %llu, \"taken_reid\": %llu, "
		    "\"list_sent\": %llu, \"not_redelivered\": %llu, "
		    "\"duplicates\": %llu, \"forward_held\": %s}\n",
		    st.own_up && st.replica_up ? "true" : "false",
		    st.own_up ? "true" : "false",
		    st.replica_up ? "true" : "false", st.last_heard,
		    st.ack_mode, sent, acked,
		    (unsigned long long)st.lag_commits, st.lag_seconds,
		    st.replica_in_sync ? "true" : "false", rnext, racked,
		    mirror_takeover_str(st.takeover), st.takeover_after,
		    (unsigned long long)st.acks_sent,
		    (unsigned long long)st.acks_received,
		    (unsigned long long)st.repl_errors,
		    (unsigned long long)ls->connects,
		    (unsigned long long)ls->refused,
		    (unsigned long long)ls->proto_errors,
		    (unsigned long long)gs.gated, (unsigned long long)gs.acked,
		    (unsigned long long)gs.timeouts,
		    (unsigned long long)gs.waiting, mirror_gate_timeout(),
		    (unsigned long long)st.replica_checkpoints,
		    (unsigned long long)ts.takeovers,
		    (unsigned long long)ts.messages,
		    (unsigned long long)ts.bytes,
		    (unsigned long long)ts.already, (unsigned long long)ts.reid,
		    (unsigned long long)ts.list_sent,
		    (unsigned long long)ts.not_redelivered,
		    (unsigned long long)ts.duplicates,
		    mirror_forward_held() ? "true" : "false");
		control_end_ok(c);
		return;
	}
	control_line(c, "%-22s %s", "connected",
	             st.own_up && st.replica_up   ? "yes"
	             : st.own_up || st.replica_up ? "partly"
	                                          : "no");
	control_line(c, "%-22s %s", "own spool link",
	             st.own_up ? "up" : "down");
	control_line(c, "%-22s %s", "replica link",
	             st.replica_up ? "up" : "down");
	if (st.last_heard >= 0)
		control_line(c, "%-22s %.1fs ago", "last heard", st.last_heard);
	else
		control_line(c, "%-22s never", "last heard");
	control_line(c, "%-22s %s", "peer_ack", st.ack_mode);
	if (mirror_gate_timeout() > 0)
		control_line(c,
		             "%-22s %llu waited for the peer: %llu acked, %llu "
		             "not within %.0fs (451), %llu waiting",
		             "replies", (unsigned long long)gs.gated,
		             (unsigned long long)gs.acked,
		             (unsigned long long)gs.timeouts,
		             mirror_gate_timeout(),
		             (unsigned long long)gs.waiting);
	control_line(c, "%-22s %s", "last sent LSN", sent);
	control_line(c, "%-22s %s", "last acked LSN", acked);
	control_line(c, "%-22s %llu message(s) / %.1fs", "lag",
	             (unsigned long long)st.lag_commits, st.lag_seconds);
	control_line(c, "%-22s %s, next LSN %s, acked %s", "replica of peer",
	             st.replica_in_sync ? "in sync" : "synchronising", rnext,
	             racked);
	control_line(c, "%-22s %llu (its old logs removed)",
	             "replica checkpoints",
	             (unsigned long long)st.replica_checkpoints);
	control_line(c, "%-22s %s (after %lds of silence)", "takeover",
	             mirror_takeover_str(st.takeover), st.takeover_after);
	control_line(
	    c,
	    "%-22s %llu time(s), %llu message(s) / %llu octets "
	    "imported (%llu before, %llu under a new id)",
	    "taken over", (unsigned long long)ts.takeovers,
	    (unsigned long long)ts.messages, (unsigned long long)ts.bytes,
	    (unsigned long long)ts.already, (unsigned long long)ts.reid);
	control_line(c,
	             "%-22s %llu id(s) sent to the peer; of ours the peer "
	             "delivered: %llu removed here, %llu duplicates",
	             "takeover lists", (unsigned long long)ts.list_sent,
	             (unsigned long long)ts.not_redelivered,
	             (unsigned long long)ts.duplicates);
	if (mirror_forward_held())
		control_line(c, "%-22s waiting for the peer's takeover list",
		             "forwarding");
	control_line(c, "%-22s sent %llu, received %llu", "acks",
	             (unsigned long long)st.acks_sent,
	             (unsigned long long)st.acks_received);
	control_line(c,
	             "%-22s connects %llu, refused %llu, protocol errors "
	             "%llu, replication errors %llu",
	             "link", (unsigned long long)ls->connects,
	             (unsigned long long)ls->refused,
	             (unsigned long long)ls->proto_errors,
	             (unsigned long long)st.repl_errors);
	control_end_ok(c);
}

void
control_takeover(struct control_client *c)
{
	char err[1024];

	if (!mirror_enabled()) {
		control_end_err(c, "no peer configured");
		return;
	}
	if (mirror_takeover_now("asked by backmxctl takeover", err,
	                        sizeof(err)) < 0) {
		control_end_err(c, "%s", err);
		return;
	}
	control_line(c, "the mail held for the peer is being delivered by us");
	control_end_ok(c);
}
