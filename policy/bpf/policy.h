/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * espy policy: the compiled SPD as the XDP program looks it up.
 *
 * Written by the Go compiler in policy/bpf (CompileRules, CompileDecorrelated);
 * the Go reference lookup (Compiled.Lookup) is the executable specification
 * of the loop below, and tests prove it answers as the linear first-match
 * scan over the ordered rules.
 *
 * Design: TupleMerge. Each table hashes the packet's fields masked to the
 * table's prefix lengths; the hit is a bucket of at most ESPY_POLICY_BUCKET
 * candidate rules, sorted by priority, whose exact ranges are checked. Ranges
 * need no prefix expansion, so ClassBench-like port ranges cost one record.
 *
 * Maps:
 *   espy_policy_meta    ARRAY[1]                        struct espy_policy_meta
 *   espy_policy_tables  ARRAY[ESPY_POLICY_MAX_TABLES]   struct espy_policy_table
 *   espy_policy_ranges  ARRAY[ESPY_POLICY_MAX_RANGES]   struct espy_policy_range
 *   espy_policy_keys    HASH[ESPY_POLICY_MAX_KEYS]      struct espy_policy_key
 *                                                       -> struct espy_policy_bucket
 *
 * All fields are in host byte order. Lookup of a packet (the inner 5-tuple
 * of an ESP-NULL flow):
 *
 *   k.meta   = family << 56 | proto << 48 | sport << 32 | dport << 16;
 *              (ICMP/ICMPv6: sport = type << 8 | code, dport = 0)
 *   k.label  = 0 (unlabelled);
 *   k.src[0] = high 64 bits of the address, k.src[1] = low 64 bits
 *              (IPv4: src[0] = 0, src[1] = the address); dst likewise;
 *   best = none;
 *   for (i = 0; i < ESPY_POLICY_MAX_TABLES; i++) {       // fixed bound
 *       if (i >= meta.ntables) break;
 *       t = tables[i];
 *       if (best && t.min_prio >= best.prio) break;      // nothing better left
 *       mk = k & t.mask (every word); mk.table = i;
 *       b = lookup(espy_policy_keys, mk);
 *       if (!b) continue;
 *       for (j = 0; j < ESPY_POLICY_BUCKET; j++) {       // fixed bound
 *           if (j >= b.count) break;
 *           r = ranges[b.idx[j]];
 *           if (best && r.prio >= best.prio) break;      // bucket is sorted
 *           if (r matches the packet in every field) { best = r; break; }
 *       }
 *       if (best && best.final) break;                   // cannot be beaten
 *       if (best && (meta.flags & ESPY_POLICY_F_DISJOINT)) break; // first hit
 *   }
 *   no best: apply meta.miss_action.
 *
 * A policy that does not fit (more tables, keys, ranges or bucket slots than
 * these bounds) is not compiled at all: Go returns ErrTooLargeForBPF and the
 * flows go to userspace (miss_action ESPY_POLICY_PUNT).
 */
#ifndef ESPY_POLICY_H
#define ESPY_POLICY_H

#include <linux/types.h>

#define ESPY_POLICY_MAX_TABLES  32      /* outer loop bound, tables map size */
#define ESPY_POLICY_BUCKET      7       /* inner loop bound */
#define ESPY_POLICY_MAX_KEYS    65536   /* keys hash map size */
#define ESPY_POLICY_MAX_RANGES  65536   /* ranges array size */

#define ESPY_POLICY_F_DISJOINT  0x1     /* ranges never overlap */

/* Actions (struct espy_policy_range.action), as Go's policy.Action. */
#define ESPY_POLICY_NONE      0
#define ESPY_POLICY_PROTECT   1
#define ESPY_POLICY_BYPASS    2
#define ESPY_POLICY_DISCARD   3
#define ESPY_POLICY_ALLOW     4
#define ESPY_POLICY_DROP      5
#define ESPY_POLICY_LOG       6
#define ESPY_POLICY_PUNT      255       /* classify in userspace */

struct espy_policy_key {
	__u32 table;   /* table index; 0 in masks */
	__u32 label;
	__u64 meta;    /* family << 56 | proto << 48 | sport << 32 | dport << 16 */
	__u64 src[2];  /* [0]: high 64 bits, [1]: low 64 bits */
	__u64 dst[2];
};

struct espy_policy_bucket {
	__u32 count;                       /* 1..ESPY_POLICY_BUCKET */
	__u32 idx[ESPY_POLICY_BUCKET];     /* into espy_policy_ranges, by prio */
};

struct espy_policy_range {
	__u64 src_lo[2], src_hi[2];        /* inclusive, as key.src */
	__u64 dst_lo[2], dst_hi[2];
	__u32 label_lo, label_hi;
	__u16 sport_lo, sport_hi;
	__u16 dport_lo, dport_hi;
	__u8  family_lo, family_hi;        /* 4..4, 6..6 or 4..6 */
	__u8  proto_lo, proto_hi;
	__u8  action;                      /* ESPY_POLICY_* */
	__u8  final;                       /* 1: a hit here ends the lookup */
	__u8  pad[2];
	__u32 prio;                        /* lower wins */
	__u32 rule;                        /* index of the deciding rule */
	__u32 sa;                          /* SA/tunnel index for PROTECT, else 0 */
	__u32 pad2;
};
/*
 * final (in what were pad bytes: no other field moved, the size is 104) is
 * 1 when no range of another table with a better priority overlaps this
 * one, so a hit on it cannot be beaten: a better range holding the packet
 * would overlap it, and it cannot sit in the hit's own table, whose ranges
 * holding the packet all share the hit's bucket, sorted by priority. The
 * compiler may leave it 0 where 1 would do, never the reverse; maps written
 * before the flag existed read 0, the full walk. Disjoint sets have it on
 * every range.
 */

struct espy_policy_table {
	struct espy_policy_key mask;
	__u32 min_prio;                    /* best priority in the table */
	__u32 keys;                        /* keys of this table */
};

struct espy_policy_meta {
	__u32 ntables;
	__u32 flags;                       /* ESPY_POLICY_F_* */
	__u32 keys;
	__u32 ranges;
	__u8  miss_action;
	__u8  pad[7];
};

_Static_assert(sizeof(struct espy_policy_key) == 48, "key layout");
_Static_assert(sizeof(struct espy_policy_bucket) == 32, "bucket layout");
_Static_assert(sizeof(struct espy_policy_range) == 104, "range layout");
_Static_assert(sizeof(struct espy_policy_table) == 56, "table layout");
_Static_assert(sizeof(struct espy_policy_meta) == 24, "meta layout");

#endif /* ESPY_POLICY_H */
