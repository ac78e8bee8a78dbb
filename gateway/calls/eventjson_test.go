package calls

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
)

// sameAsMarshal fails t unless Encode(e) returns json.Marshal(e)'s bytes,
// or an error where json.Marshal has one, and AppendEncoded appends the
// same bytes after what its buffer holds (or leaves it as it was, with
// the error).
func sameAsMarshal(t *testing.T, e Event) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	got, err := Encode(&e)
	switch {
	case wantErr != nil && err == nil:
		t.Fatalf("Encode(%+v) = %s, json.Marshal's error: %v", e, got, wantErr)
	case wantErr == nil && err != nil:
		t.Fatalf("Encode(%+v): %v; json.Marshal: %s", e, err, want)
	case !bytes.Equal(got, want):
		t.Fatalf("Encode:\n%s\njson.Marshal:\n%s", got, want)
	}
	for _, capacity := range []int{len("prev\n"), 4096} { // grown, and in place
		dst := append(make([]byte, 0, capacity), "prev\n"...)
		got, err := AppendEncoded(dst, &e)
		switch {
		case wantErr != nil && (err == nil || string(got) != "prev\n"):
			t.Fatalf("AppendEncoded(%+v) = %q, %v; json.Marshal's error: %v", e, got, err, wantErr)
		case wantErr == nil && (err != nil || !bytes.Equal(got, append([]byte("prev\n"), want...))):
			t.Fatalf("AppendEncoded:\n%s (%v)\njson.Marshal after prev:\n%s", got, err, want)
		}
	}
}

// An event appended to a buffer with room for it allocates nothing (the
// history recorder's and the Tee's per-event path).
func TestAppendEncodedDoesNotAllocate(t *testing.T) {
	e := Event{Kind: Ended, CallID: "a84b4c76e66710@pbx.example.com", Time: time.Now(), Number: "+12025550100",
		Workspace: "acme", Agent: "agent-1", Region: "eu-west", Carrier: "twilio", Origin: "purchased", Source: "sip",
		SetupMillis: 812.5, Status: 200, Reason: "bye_caller", Duration: 93 * time.Second, Direction: Inbound,
		From: "+447700900123", To: "+12025550100", Endpoint: "sip:bot@10.0.0.7:5070", HookOutcome: "none"}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = AppendEncoded(buf[:0], &e); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("AppendEncoded allocates %v times per event", n)
	}
}

func TestEncodeIsJSONMarshal(t *testing.T) {
	at := time.Date(2026, 12, 4, 8, 9, 39, 123456789, time.UTC)
	sip := Event{Kind: Ended, CallID: "a84b4c76e66710@pbx.example.com", Time: at, Number: "+12025550100",
		Workspace: "acme", Agent: "agent-1", Region: "eu-west", Carrier: "twilio", Origin: "purchased", Source: "sip",
		SetupMillis: 812.5, Status: 200, Reason: "bye_caller", Duration: 93 * time.Second, Direction: Inbound,
		From: "+447700900123", To: "+12025550100", ForwardedFrom: "+12025550111", Endpoint: "sip:bot@10.0.0.7:5070;transport=tcp",
		HookOutcome: "route", FallbackStep: 2}
	cases := map[string]Event{
		"zero":          {},
		"sip ended":     sip,
		"started":       {Kind: Started, CallID: "x", Time: at.In(time.FixedZone("", -(7*3600 + 30*60))), Number: "+12025550100"},
		"whole millis":  {Kind: Answered, SetupMillis: 800, Time: at.Truncate(time.Second)},
		"tiny millis":   {Kind: Answered, SetupMillis: 0.0000005},
		"huge millis":   {Kind: Answered, SetupMillis: 1e21},
		"negative":      {Kind: Ended, SetupMillis: -3.25, Status: -1, Duration: -time.Nanosecond, FallbackStep: -4},
		"escapes":       {Kind: "k\"<>&\\", CallID: "é\u2028\x00\xff", Number: "\t\n", Workspace: "a&b"},
		"media":         {Kind: Ended, Media: map[string]any{"caller": map[string]int{"packets": 3}, "timed_out": true}},
		"media nil ptr": {Kind: Ended, Media: (*TransferInfo)(nil)},
		"transfer":      {Kind: TransferKind, Transfer: &TransferInfo{To: "tel:+14155550143", Mode: "bridge", State: TransferCompleted, Status: 200}},
		"headers":       {Kind: Started, Headers: map[string]string{"X-B": "2", "X-A": "<1>"}},
		"empty headers": {Kind: Started, Headers: map[string]string{}},
		"dtmf":          {Kind: DTMF, Digits: "12#", DTMFFrom: "caller", DTMFVia: "rfc4733", CarrierCallID: "CA123"},
		"year 10000":    {Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"year -1":       {Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		"zone 24h":      {Time: at.In(time.FixedZone("", 24*3600))},
		"zone seconds":  {Time: at.In(time.FixedZone("", 3600+30))},
		"NaN":           {SetupMillis: math.NaN()},
		"Inf":           {SetupMillis: math.Inf(-1)},
		"bad media":     {Media: func() {}},
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) { sameAsMarshal(t, e) })
	}
}

// TestEncodeWritesEveryField fills every field of Event: a field added to
// Event and not to Encode fails here.
func TestEncodeWritesEveryField(t *testing.T) {
	var e Event
	v := reflect.ValueOf(&e).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(v.Type().Field(i).Name)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Float64:
			f.SetFloat(float64(i) + 0.5)
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"X-Field": "1"}))
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		case reflect.Interface:
			f.Set(reflect.ValueOf(map[string]int{"packets": 1}))
		case reflect.Struct:
			f.Set(reflect.ValueOf(time.Date(2026, 12, 4, 8, 0, 0, 1, time.UTC)))
		default:
			t.Fatalf("field %s of kind %s: teach this test (and Encode) about it", v.Type().Field(i).Name, f.Kind())
		}
	}
	sameAsMarshal(t, e)
}

// FuzzEncode: Encode returns json.Marshal's bytes, or an error where
// json.Marshal has one, for any strings, numbers, times and zones.
func FuzzEncode(f *testing.F) {
	f.Add("ended", "a84b4c76e66710@pbx.example.com", int64(1764835779), int64(123456789), 0, "+12025550100", "acme", "sip:bot@10.0.0.7", 812.5, 200, int64(93e9), "x-\"<é>\u2028", false)
	f.Add("started", "", int64(0), int64(0), 3600, "", "", "", 0.0, 0, int64(0), "", true)
	f.Add("k", "\xff\x00", int64(-62135596801), int64(999999999), -86400, "\\", "&", "\t", 1e-7, -3, int64(-1), "<", true)
	f.Add("k", "id", int64(253402300800), int64(-1), 86399, "n", "w", "e", math.Inf(1), 1, int64(1), "y", false)
	f.Fuzz(func(t *testing.T, kind, callID string, unixSec, nsec int64, zone int, number, ws, endpoint string, setup float64, status int, dur int64, reason string, extras bool) {
		at := time.Unix(unixSec, nsec).In(time.FixedZone("", zone%(48*3600)))
		e := Event{Kind: kind, CallID: callID, Time: at, Number: number, Workspace: ws, Endpoint: endpoint,
			SetupMillis: setup, Status: status, Duration: time.Duration(dur), Reason: reason, From: reason, Agent: callID}
		if extras {
			e.Headers = map[string]string{reason: kind}
			e.Transfer = &TransferInfo{To: endpoint, State: reason, Status: status}
			e.Media = map[string]float64{"jitter_ms": setup}
		}
		sameAsMarshal(t, e)
	})
}

// BenchmarkEncode: an inbound SIP call's ended event, by Encode, by
// AppendEncoded into a buffer of its own and by json.Marshal.
//
//	go test ./gateway/calls -run '^$' -bench Encode -benchmem -count 5
func BenchmarkEncode(b *testing.B) {
	e := Event{Kind: Ended, CallID: "a84b4c76e66710@pbx.example.com", Time: time.Now(), Number: "+12025550100",
		Workspace: "acme", Agent: "agent-1", Region: "eu-west", Carrier: "twilio", Origin: "purchased", Source: "sip",
		SetupMillis: 812.5, Status: 200, Reason: "bye_caller", Duration: 93 * time.Second, Direction: Inbound,
		From: "+447700900123", To: "+12025550100", Endpoint: "sip:bot@10.0.0.7:5070", HookOutcome: "none"}
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := Encode(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendEncoded", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for i := 0; i < b.N; i++ {
			var err error
			if buf, err = AppendEncoded(buf[:0], &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
