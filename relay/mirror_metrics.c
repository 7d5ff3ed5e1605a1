/*
 * mirror_metrics.c - the mirror's counters for `backmxctl stats` and the
 * Prometheus page (issue 18): the `peer_ack peer` gate (replies that
 * waited for the peer, acknowledged in time, 451 on timeout, of those
 * at once because the link was down), the links and the lag, takeovers
 * (messages imported, re-id'd, ids sent back, ours removed undelivered,
 * duplicates).  Reads mirror.c, mirror_gate.c and mirror_takeover.c's
 * status; with no `peer` configured there is nothing to show.
 */
#include <stdio.h>

#include "json.h"
#include "mirror.h"

size_t
mirror_counters(struct mirror_counter *out, size_t max)
{
	struct mirror_status st;
	struct mirror_gate_stats g;
	struct mirror_takeover_stats t;
	size_t n = 0;

	if (!mirror_enabled())
		return 0;
	mirror_status(&st);
	mirror_gate_status(&g);
	mirror_takeover_status(&t);
#define M(nm_, met_, gauge_, v_, help_)                                        \
	do {                                                                   \
		if (n < max) {                                                 \
			out[n].name = nm_;                                     \
			out[n].metric = met_;                                  \
			out[n].is_gauge = gauge_;                              \
			out[n].value = (uint64_t)(v_);                         \
			out[n].help = help_;                                   \
			n++;                                                   \
		}                                                              \
	} while (0)
	M("peer_own_link_up", "backmx_peer_own_link_up", 1, st.own_up,
	  "1 while our spool's replication link to the peer is up.");
	M("peer_replica_link_up", "backmx_peer_replica_link_up", 1,
	  st.replica_up, "1 while the peer's replication link to us is up.");
	M("peer_lag_commits", "backmx_peer_lag_commits", 1, st.lag_commits,
	  "Our commits the peer has not acknowledged yet.");
	M("peer_replica_in_sync", "backmx_peer_replica_in_sync", 1,
	  st.replica_in_sync,
	  "1 once our replica of the peer's spool is in sync.");
	M("peer_gated", "backmx_peer_gated_total", 0, g.gated,
	  "Replies to DATA/BDAT that waited for the peer's acknowledgement.");
	M("peer_gated_acked", "backmx_peer_gated_acked_total", 0, g.acked,
	  "Of those, acknowledged by the peer in time (250).");
	M("peer_gated_timeouts", "backmx_peer_gated_timeouts_total", 0,
	  g.timeouts, "Of those, not acknowledged in time (451 4.3.0).");
	M("peer_gated_link_down", "backmx_peer_gated_link_down_total", 0,
	  g.link_down,
	  "Of the timeouts, answered at once: the link was down too long.");
	M("peer_takeovers", "backmx_peer_takeovers_total", 0, t.takeovers,
	  "Times this node took the peer's mail over.");
	M("peer_taken_messages", "backmx_peer_taken_messages_total", 0,
	  t.messages, "Messages of the peer's spool imported into ours.");
	M("peer_taken_reid", "backmx_peer_taken_reid_total", 0, t.reid,
	  "Of those, imported under a new queue id.");
	M("peer_taken_ids_sent", "backmx_peer_taken_ids_sent_total", 0,
	  t.list_sent, "Ids of taken messages sent back to the returned peer.");
	M("peer_not_redelivered", "backmx_peer_not_redelivered_total", 0,
	  t.not_redelivered,
	  "Our messages the peer delivered for us: removed undelivered.");
	M("peer_duplicates", "backmx_peer_duplicates_total", 0, t.duplicates,
	  "Our messages delivered by both nodes (in flight at the loss).");
#undef M
	return n;
}

void
mirror_metrics_page(struct json_buf *b)
{
	struct mirror_counter c[MIRROR_COUNTERS_MAX];
	size_t n = mirror_counters(c, MIRROR_COUNTERS_MAX);

	for (size_t i = 0; i < n; i++)
		json_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n",
		                c[i].metric, c[i].help, c[i].metric,
		                c[i].is_gauge ? "gauge" : "counter",
		                c[i].metric, (unsigned long long)c[i].value);
}
