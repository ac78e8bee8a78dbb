package callhistory

import (
	"encoding/csv"
	"io"
	"strconv"
	"time"
)

// CSVHeader is the header row of WriteCSV, one column per Call field
// (media figures flattened per leg).
var CSVHeader = []string{
	"id", "direction", "from", "to", "number", "origin", "forwarded_from", "agent", "region", "carrier",
	"endpoint", "hook_outcome", "fallback_step", "outcome", "started_at", "answered_at", "ended_at",
	"setup_ms", "duration_s", "sip_status", "end_reason",
	"caller_packets", "caller_lost", "caller_loss_ratio", "caller_jitter_ms", "caller_rtt_ms",
	"agent_packets", "agent_lost", "agent_loss_ratio", "agent_jitter_ms", "agent_rtt_ms",
}

// WriteCSV writes calls as CSV (RFC 4180: CRLF line ends, quoting where
// needed) with a header row. Cells that a spreadsheet would read as a
// formula (starting with = + - @, tab or carriage return) are prefixed
// with a single quote: caller IDs and end reasons come from strangers.
func WriteCSV(w io.Writer, cs []Call) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	row := make([]string, 0, len(CSVHeader))
	for i := range cs {
		c := &cs[i]
		row = append(row[:0], c.ID, c.Direction, c.From, c.To, c.Number, c.Origin, c.ForwardedFrom, c.Agent,
			c.Region, c.Carrier, c.Endpoint, c.HookOutcome, strconv.Itoa(c.FallbackStep), c.Outcome,
			csvTime(&c.StartedAt), csvTime(c.AnsweredAt), csvTime(c.EndedAt), csvFloatPtr(c.SetupMillis),
			csvFloat(c.DurationSeconds), csvInt(c.SIPStatus), c.EndReason)
		if m := c.Media; m != nil {
			for _, l := range []*MediaLeg{&m.Caller, &m.Agent} {
				row = append(row, strconv.FormatUint(l.Packets, 10), strconv.FormatInt(l.Lost, 10),
					csvFloat(l.LossRatio), csvFloat(l.JitterMillis), csvFloat(l.RTTMillis))
			}
		} else {
			row = append(row, "", "", "", "", "", "", "", "", "", "")
		}
		for j, v := range row {
			row[j] = SafeCell(v)
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// SafeCell defuses a cell a spreadsheet would evaluate as a formula
// (OWASP CSV injection): it prefixes it with a single quote.
func SafeCell(v string) string {
	if v == "" {
		return v
	}
	switch v[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + v
	}
	return v
}

func csvTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func csvFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func csvFloatPtr(f *float64) string {
	if f == nil {
		return ""
	}
	return csvFloat(*f)
}

func csvInt(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}
