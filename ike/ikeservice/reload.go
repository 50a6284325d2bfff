package ikeservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/ikets"
	"github.com/rs/zerolog"
)

// ErrPolicy marks a reload that was rejected: the file's policy section
// does not parse or validate, or it could not be published. The SPD in
// force before stays.
var ErrPolicy = errors.New("ikeservice: policy rejected")

// childCheckWait bounds the rekey or delete of one Child SA after a reload.
const childCheckWait = 30 * time.Second

// busyRounds and busyWait: a Child SA being rekeyed when a reload checks it
// (its lifetime ran out, or the peer narrows it too), or whose rekey the
// peer answers TEMPORARY_FAILURE, is checked again, in its successor if it
// has one, this many times at this interval.
const (
	busyRounds = 10
	busyWait   = 200 * time.Millisecond
)

// Child SA decisions of a reload.
const (
	DecisionRekey  = "rekey"  // rekeyed with narrowed selectors
	DecisionDelete = "delete" // no part of its traffic is routed to its tunnel any more
)

// ReloadStatus is what a policy reload did.
type ReloadStatus struct {
	File  string `json:"file"`
	Rules int    `json:"rules"`
	// Checked counts the Child SAs checked against the new SPD (those of
	// tunnels a PROTECT rule names before or after the reload).
	Checked int `json:"checked"`
	// Decisions lists the Child SAs the new SPD cuts into.
	Decisions []ChildDecision `json:"decisions"`
	// LoadMillis is the time to read, check and publish the new SPD;
	// CheckMillis the time to check, rekey and delete the Child SAs.
	LoadMillis  float64 `json:"load_ms"`
	CheckMillis float64 `json:"check_ms"`
}

// ChildDecision is one Child SA that a reload rekeyed or deleted.
type ChildDecision struct {
	Tunnel string `json:"tunnel"`
	SPIIn  string `json:"spi_in"` // of the old Child SA
	// Action is DecisionRekey or DecisionDelete (also after a failed
	// rekey, with Error saying why).
	Action string `json:"action"`
	// Lost names the rules that now take part of its traffic; "(no
	// rule)" stands for traffic no rule matches.
	Lost []string `json:"lost"`
	// LocalTS and RemoteTS are the selectors rekeyed with, and NewSPIIn
	// the new Child SA; empty for a delete.
	LocalTS  []string `json:"local_ts,omitempty"`
	RemoteTS []string `json:"remote_ts,omitempty"`
	NewSPIIn string   `json:"new_spi_in,omitempty"`
	// Error says why the rekey or delete failed. A Child SA whose rekey
	// failed is deleted rather than left covering traffic the SPD routes
	// elsewhere.
	Error string `json:"error,omitempty"`
}

// ReloadPolicy reads the policy section of the configuration file again.
// A policy that does not parse is rejected with its file, line and reason
// (ErrPolicy) and the SPD in force stays. Otherwise the new SPD is
// published (Options.PublishPolicy), replaces the old one for every later
// proposal and narrowing, and every Child SA of a tunnel that a PROTECT
// rule names, before or after, is checked against it (ikets.CheckChildSA):
// one whose selectors now cover traffic a higher-precedence rule routes
// elsewhere is rekeyed with the narrowed selectors (RFC 7296 1.3.3), one
// none of whose traffic is still routed to its tunnel is deleted.
func (s *Service) ReloadPolicy(ctx context.Context) (ReloadStatus, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	start := time.Now()
	st := ReloadStatus{File: s.file, Decisions: []ChildDecision{}}
	if s.file == "" {
		return st, fmt.Errorf("%w: the service was started without a configuration file", ErrPolicy)
	}
	pol, err := policy.LoadFile(s.file)
	if err != nil {
		s.log.Error().Err(err).Str("file", s.file).Msg("policy reload rejected; the previous SPD stays")
		return st, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	if s.publish != nil {
		if err := s.publish(pol); err != nil {
			s.log.Error().Err(err).Str("file", s.file).Msg("policy reload not published; the previous SPD stays")
			return st, fmt.Errorf("%w: publish: %w", ErrPolicy, err)
		}
	}
	old := s.spd.Swap(pol)
	st.Rules = len(pol.Rules)
	st.LoadMillis = float64(time.Since(start).Microseconds()) / 1000
	s.log.Info().Str("file", s.file).Int("rules", st.Rules).Float64("load_ms", st.LoadMillis).Msg("policy reloaded")
	start = time.Now()
	for _, t := range s.tunnels {
		if !protects(old, t.spec.Name) && !protects(pol, t.spec.Name) {
			continue
		}
		n, ds := t.checkChildren(ctx, pol)
		st.Checked += n
		st.Decisions = append(st.Decisions, ds...)
	}
	st.CheckMillis = float64(time.Since(start).Microseconds()) / 1000
	s.log.Info().Int("checked", st.Checked).Int("changed", len(st.Decisions)).Float64("check_ms", st.CheckMillis).Msg("Child SAs checked against the new SPD")
	return st, nil
}

// checkChildren checks the tunnel's Child SAs against pol, rekeys or
// deletes those it cuts into, and returns how many it checked and what it
// did.
func (t *tunnel) checkChildren(ctx context.Context, pol *policy.Policy) (int, []ChildDecision) {
	t.mu.Lock()
	sas := make([]*ike.IKESA, 0, len(t.sas))
	for sa := range t.sas {
		sas = append(sas, sa)
	}
	t.mu.Unlock()
	seen := map[*ike.ChildSA]bool{}
	var out []ChildDecision
	for round := 0; round < busyRounds; round++ {
		busy := false
		for _, sa := range sas {
			for _, c := range sa.Children() {
				seen[c] = true
				// The SA's TSi is the remote side and TSr the local one
				// in ikets' responder view.
				rk, err := ikets.CheckChildSA(pol.Rules, pol.LabelID, toIkets(c.RemoteTS), toIkets(c.LocalTS), t.spec.Name)
				if err != nil {
					t.s.log.Warn().Err(err).Str("tunnel", t.spec.Name).Str("spi_in", fmt.Sprintf("%08x", c.InSPI)).Msg("Child SA not checked against the SPD")
					continue
				}
				if !rk.Needed {
					continue
				}
				d, again := t.apply(ctx, sa, c, rk)
				if again {
					busy = true
					continue
				}
				if d.Action != "" {
					out = append(out, d)
				}
			}
		}
		if !busy {
			break
		}
		select {
		case <-time.After(busyWait):
		case <-ctx.Done():
			return len(seen), out
		}
	}
	return len(seen), out
}

// apply rekeys c with the narrowed selectors of rk, or deletes it when rk
// leaves none or the rekey fails, and logs the decision. again is true
// when c is being rekeyed already: its successor is to be checked
// instead. A Child SA that is gone meanwhile yields no decision.
func (t *tunnel) apply(ctx context.Context, sa *ike.IKESA, c *ike.ChildSA, rk ikets.Rekey) (d ChildDecision, again bool) {
	d = ChildDecision{Tunnel: t.spec.Name, SPIIn: fmt.Sprintf("%08x", c.InSPI), Action: DecisionDelete, Lost: rk.Lost}
	ctx, cancel := context.WithTimeout(ctx, childCheckWait)
	defer cancel()
	ev := func() *zerolog.Event {
		return t.s.log.Info().Str("tunnel", t.spec.Name).Str("spi_in", d.SPIIn).Strs("lost_to", rk.Lost).
			Strs("local_ts", selectorStrings(c.LocalTS)).Strs("remote_ts", selectorStrings(c.RemoteTS))
	}
	if len(rk.TSi.TS) > 0 {
		d.Action = DecisionRekey
		local, remote := fromIkets(rk.TSr), fromIkets(rk.TSi)
		d.LocalTS, d.RemoteTS = selectorStrings(local), selectorStrings(remote)
		ev().Strs("new_local_ts", d.LocalTS).Strs("new_remote_ts", d.RemoteTS).Msg("SPD change: rekeying Child SA with narrowed selectors")
		n, err := sa.RekeyChildSelectors(ctx, c, local, remote)
		var ne *ike.NotifyError
		switch {
		case errors.Is(err, ike.ErrRekeying):
			t.s.log.Info().Str("tunnel", t.spec.Name).Str("spi_in", d.SPIIn).Msg("SPD change: Child SA is being rekeyed; checking its successor")
			return ChildDecision{}, true
		case errors.As(err, &ne) && ne.Type == message.TEMPORARY_FAILURE:
			// RFC 7296 2.25: the peer is replacing it (its own rekey,
			// after its own reload, say) or busy; retry, or check the
			// SA that replaced it.
			t.s.log.Info().Str("tunnel", t.spec.Name).Str("spi_in", d.SPIIn).Msg("SPD change: peer answered TEMPORARY_FAILURE; checking again")
			return ChildDecision{}, true
		case errors.Is(err, ike.ErrNoChild), errors.Is(err, ike.ErrDeleted):
			t.s.log.Info().Str("tunnel", t.spec.Name).Str("spi_in", d.SPIIn).Msg("SPD change: Child SA gone meanwhile")
			return ChildDecision{}, false
		}
		if err == nil {
			d.NewSPIIn = fmt.Sprintf("%08x", n.InSPI)
			t.s.log.Info().Str("tunnel", t.spec.Name).Str("spi_in", d.SPIIn).Str("new_spi_in", d.NewSPIIn).
				Strs("local_ts", selectorStrings(n.LocalTS)).Strs("remote_ts", selectorStrings(n.RemoteTS)).Msg("SPD change: Child SA rekeyed")
			return d, false
		}
		if n != nil {
			// The old SA is gone, its delete unanswered: the new one
			// stands.
			d.NewSPIIn = fmt.Sprintf("%08x", n.InSPI)
			d.Error = err.Error()
			t.s.log.Warn().Err(err).Str("tunnel", t.spec.Name).Str("spi_in", d.SPIIn).Str("new_spi_in", d.NewSPIIn).Msg("SPD change: Child SA rekeyed, delete of the old one failed")
			return d, false
		}
		d.Action, d.LocalTS, d.RemoteTS, d.Error = DecisionDelete, nil, nil, err.Error()
		t.s.log.Warn().Err(err).Str("tunnel", t.spec.Name).Str("spi_in", d.SPIIn).Msg("SPD change: narrowed rekey failed; deleting the Child SA rather than keep traffic the SPD routes elsewhere")
	} else {
		ev().Msg("SPD change: none of the Child SA's traffic is routed to its tunnel; deleting it")
	}
	if err := sa.DeleteChild(ctx, c); err != nil && !errors.Is(err, ike.ErrNoChild) {
		d.Error = joinErr(d.Error, err.Error())
		t.s.log.Warn().Err(err).Str("tunnel", t.spec.Name).Str("spi_in", d.SPIIn).Msg("SPD change: delete of the Child SA")
	}
	return d, false
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
