/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy_maps.h: how the XDP program holds the compiled SPD.
 *
 * The layouts of the compiled policy and the lookup loop come from
 * policy/bpf/policy.h, owned by the policy package. This header adds what is
 * particular to the program: two complete map sets, the control word that
 * says which one the fast path reads, and per-CPU counters of the lookup.
 *
 * Publication (docs/ebpf.md, "The compiled SPD in XDP"): userspace writes
 * every map of the inactive set, then flips espy_policy_ctl with one 8-byte
 * write that also bumps the generation. The fast path reads the control
 * word before and after its lookup and retries (then punts) if it changed,
 * so it never answers from a set that was being rewritten under it.
 */
#ifndef ESPY_POLICY_MAPS_H
#define ESPY_POLICY_MAPS_H

#include "abi.h"

/* policy.h includes <linux/types.h>, which would pull in the host's asm/
 * headers; abi.h already defines the __u* types, so skip it. */
#ifndef _LINUX_TYPES_H
#define _LINUX_TYPES_H
#endif
#include "../../policy/bpf/policy.h"

#define ESPY_BPF_F_NO_PREALLOC 1

/*
 * The single entry of espy_policy_ctl, one __u64 so that userspace replaces
 * it with one store:
 *   bit 0       the active set (0 or 1)
 *   bit 1       a compiled policy is published in the active set
 *   bit 2       punt: the policy did not fit (ErrTooLargeForBPF); every
 *               lookup that the exact stage does not answer is punted
 *   bits 32..63 generation, incremented by every publication
 * Neither bit 1 nor bit 2: no policy, the exact stage and the configured
 * inner default decide, as before the SPD existed.
 */
#define ESPY_POLICY_CTL_SET1   0x1ULL
#define ESPY_POLICY_CTL_LOADED 0x2ULL
#define ESPY_POLICY_CTL_PUNT   0x4ULL

/*
 * A per-table Bloom filter over the table's masked keys, written by
 * userspace with the set: a probe whose bit is clear cannot hit, and the hash
 * lookup (the dominant cost, ~20 ns for a 48-byte key) is skipped. One hash
 * function, 2^16 bits a table. The hash is espy_policy_bloom_hash below;
 * Go's bloomHash in ebpf/policy.go must stay identical.
 */
#define ESPY_POLICY_BLOOM_WORDS 1024
#define ESPY_POLICY_BLOOM_BITS (ESPY_POLICY_BLOOM_WORDS * 64)

struct espy_policy_bloom {
	__u64 w[ESPY_POLICY_BLOOM_WORDS];
};

static inline __attribute__((always_inline)) __u64 espy_policy_bloom_hash(const struct espy_policy_key *k)
{
	__u64 h = k->meta ^ (__u64)k->label << 7;

	h ^= k->src[0] * 0x9e3779b97f4a7c15ULL;
	h ^= k->src[1] * 0xc2b2ae3d27d4eb4fULL;
	h ^= k->dst[0] * 0x165667b19e3779f9ULL;
	h ^= k->dst[1] * 0xd6e8feb86659fd93ULL;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	return h;
}

/* Indices of espy_policy_stats (per-CPU __u64 counters). */
enum espy_policy_stat {
	ESPY_PSTAT_EXACT = 0, /* answered by the exact 5-tuple stage */
	ESPY_PSTAT_HIT,       /* a compiled range matched */
	ESPY_PSTAT_MISS,      /* no range matched: the policy's miss action */
	ESPY_PSTAT_PUNT,      /* punted to userspace (PUNT action, too large, retries) */
	ESPY_PSTAT_RETRY,     /* lookup repeated: a publication raced it */
	ESPY_PSTAT_DEFAULT,   /* no policy published: the configured default */
	ESPY_PSTAT_CACHE_HIT, /* answered by spd_cache, no walk */
	ESPY_PSTAT_MAX,
};

#endif /* ESPY_POLICY_MAPS_H */
