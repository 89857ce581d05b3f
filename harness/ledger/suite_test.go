package ledger

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is one fresh ledger of one driver, with a way around the store to its database.
type fixture struct {
	driver string
	loc    string // SQLite file or PostgreSQL DSN
	// raw runs SQL on the ledger's database without the store (a hand edit).
	raw func(t *testing.T, q string)
	// scalar runs a query returning one integer, without the store.
	scalar func(t *testing.T, q string) int64
	// cli runs a query through the driver's own command-line client (sqlite3, psql) and returns
	// its CSV output, header first: a judge that shares no code with the store.
	cli func(t *testing.T, q string) [][]string
	// ts renders a timestamp column in SQL as RFC 3339 UTC with microseconds (the SQLite text).
	ts func(col string) string
}

func (f *fixture) open(t *testing.T) Store {
	t.Helper()
	s, err := openLoc(f.driver, f.loc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var ctx = context.Background()

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func res(key, id, dak string, max int64) Reservation {
	return Reservation{DeviceKey: sum(key), DeviceID: id, Target: "dut1", Station: "st1", RunID: "run1",
		DAKSHA256: sum(dak), CSRSHA256: sum("csr of " + key), MaxSignatures: max}
}

func certFor(name string) Certificate {
	nb := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	return Certificate{Serial: strings.ToUpper(sum(name)[:16]), CertSHA256: sum("cert " + name), Subject: "CN=" + name,
		NotBefore: nb, NotAfter: nb.AddDate(5, 0, 0),
		ChainPEM: "-----BEGIN CERTIFICATE-----\nleaf " + name + "\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\ndak\n-----END CERTIFICATE-----\n"}
}

func mustReserve(t *testing.T, s Store, r Reservation) (*Record, Budget) {
	t.Helper()
	rec, b, err := s.Reserve(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	return rec, b
}

// provision takes a device all the way to verified.
func provision(t *testing.T, s Store, r Reservation) *Record {
	t.Helper()
	rec, _ := mustReserve(t, s, r)
	if err := s.Issue(ctx, rec.ID, certFor(r.DeviceKey)); err != nil {
		t.Fatal(err)
	}
	if err := s.Advance(ctx, rec.ID, Verified); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func noProblems(t *testing.T, s Store) {
	t.Helper()
	p, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) > 0 {
		t.Fatalf("Check found problems: %+v", p)
	}
}

func recent(t *testing.T, what string, ts time.Time) {
	t.Helper()
	if ts.IsZero() || time.Since(ts) > time.Minute || ts.Location() != time.UTC || ts.Nanosecond()%1000 != 0 {
		t.Errorf("%s = %v, want a recent UTC time in whole microseconds", what, ts)
	}
}

// runStoreSuite runs every test of the Store contract against ledgers newFix makes.
func runStoreSuite(t *testing.T, newFix func(t *testing.T) *fixture) {
	t.Run("Lifecycle", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		r := res("dev1", "SN1", "dak", 10)
		rec, b := mustReserve(t, s, r)
		if rec.ID == 0 || rec.State != Reserved || rec.Signatures != 1 || rec.DeviceKey != r.DeviceKey || rec.DeviceID != "SN1" ||
			rec.Target != "dut1" || rec.Station != "st1" || rec.RunID != "run1" || rec.DAKSHA256 != r.DAKSHA256 || rec.CSRSHA256 != r.CSRSHA256 {
			t.Fatalf("reserved record %+v", rec)
		}
		recent(t, "ReservedAt", rec.ReservedAt)
		if !rec.IssuedAt.IsZero() || rec.ChainPEM != "" || rec.ReplacedBy != 0 {
			t.Errorf("a new reservation has issue fields: %+v", rec)
		}
		if b != (Budget{DAKSHA256: r.DAKSHA256, Used: 1, Max: 10}) {
			t.Errorf("budget %+v", b)
		}
		got, err := s.Get(ctx, rec.ID)
		if err != nil || !reflect.DeepEqual(got, rec) {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, rec)
		}
		wantErr(t, s.Advance(ctx, rec.ID, Stored), ErrState) // no chain yet

		c := certFor("dev1")
		if err := s.Issue(ctx, rec.ID, c); err != nil {
			t.Fatal(err)
		}
		got, _ = s.Get(ctx, rec.ID)
		if got.State != Issued || got.Serial != c.Serial || got.CertSHA256 != c.CertSHA256 || got.Subject != c.Subject ||
			got.ChainPEM != c.ChainPEM || !got.NotBefore.Equal(c.NotBefore.Truncate(time.Microsecond)) || !got.NotAfter.Equal(c.NotAfter.Truncate(time.Microsecond)) {
			t.Fatalf("issued record %+v, cert %+v", got, c)
		}
		recent(t, "IssuedAt", got.IssuedAt)
		wantErr(t, s.Issue(ctx, rec.ID, certFor("again")), ErrState)

		if err := s.Advance(ctx, rec.ID, Stored); err != nil {
			t.Fatal(err)
		}
		if err := s.Advance(ctx, rec.ID, Verified); err != nil {
			t.Fatal(err)
		}
		got, _ = s.Get(ctx, rec.ID)
		if got.State != Verified {
			t.Fatalf("state %s", got.State)
		}
		recent(t, "StoredAt", got.StoredAt)
		recent(t, "VerifiedAt", got.VerifiedAt)
		// Same state or past it: nothing changes, no error.
		for _, to := range []State{Verified, Stored, Issued} {
			if err := s.Advance(ctx, rec.ID, to); err != nil {
				t.Errorf("Advance(verified -> %s) = %v, want nil", to, err)
			}
		}
		again, _ := s.Get(ctx, rec.ID)
		if !reflect.DeepEqual(again, got) {
			t.Errorf("a no-op Advance changed the record:\n%+v\n%+v", again, got)
		}
		for _, to := range []State{Reserved, Replaced, "bogus"} {
			wantErr(t, s.Advance(ctx, rec.ID, to), ErrState)
		}
		wantErr(t, s.Advance(ctx, 9999, Stored), ErrNotFound)
		wantErr(t, s.Issue(ctx, 9999, certFor("x")), ErrNotFound)
		if err := s.Issue(ctx, rec.ID, Certificate{CertSHA256: "x"}); err == nil {
			t.Error("Issue without a chain succeeded")
		}
		// Issued straight to verified, skipping stored.
		r2, _ := mustReserve(t, s, res("dev2", "", "dak", 10))
		if err := s.Issue(ctx, r2.ID, certFor("dev2")); err != nil {
			t.Fatal(err)
		}
		if err := s.Advance(ctx, r2.ID, Verified); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Get(ctx, r2.ID); got.State != Verified || !got.StoredAt.IsZero() {
			t.Errorf("issued -> verified: %+v", got)
		}
		noProblems(t, s)
	})

	t.Run("ReserveAgain", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		r := res("dev1", "SN1", "dak", 10)
		first, _ := mustReserve(t, s, r)
		// A rerun after a crash between reservation and issue: same record, one more signature.
		r.RunID, r.CSRSHA256, r.Target = "run2", sum("second csr"), "dut2"
		again, b := mustReserve(t, s, r)
		if again.ID != first.ID || again.Signatures != 2 || again.RunID != "run2" || again.CSRSHA256 != sum("second csr") ||
			again.Target != "dut2" || !again.ReservedAt.Equal(first.ReservedAt) {
			t.Fatalf("second reservation %+v, first %+v", again, first)
		}
		if b.Used != 2 {
			t.Errorf("budget used %d, want 2", b.Used)
		}
		// The same device through another DAK is another signer: not reused.
		other := res("dev1", "SN1", "dak2", 10)
		_, _, err := s.Reserve(ctx, other)
		wantErr(t, err, ErrLiveRecord)
		if b, _ := s.Budget(ctx, other.DAKSHA256); b.Used != 0 {
			t.Errorf("a refused reservation counted: %+v", b)
		}
		// Once issued, reserving again is refused: the caller should use the chain.
		if err := s.Issue(ctx, first.ID, certFor("dev1")); err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Reserve(ctx, r)
		wantErr(t, err, ErrLiveRecord)
		if b, _ := s.Budget(ctx, r.DAKSHA256); b.Used != 2 {
			t.Errorf("budget after refusal %+v, want 2 used", b)
		}
		// Another key claiming the same device id.
		_, _, err = s.Reserve(ctx, res("dev1-newkey", "SN1", "dak", 10))
		wantErr(t, err, ErrLiveRecord)
		if !strings.Contains(err.Error(), "SN1") {
			t.Errorf("error does not name the device id: %v", err)
		}
		noProblems(t, s)
	})

	t.Run("Replace", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		old := provision(t, s, res("key1", "SN1", "dak", 0))
		// Reprovision: a new key for the same device id.
		nr := res("key2", "SN1", "dak", 0)
		_, _, err := s.Reserve(ctx, nr)
		wantErr(t, err, ErrLiveRecord)
		nr.Replaces = []int64{old.ID, 4242}
		_, _, err = s.Reserve(ctx, nr)
		wantErr(t, err, ErrNotFound)
		if got, _ := s.Get(ctx, old.ID); got.State != Verified {
			t.Fatalf("a failed reservation replaced record %d: %+v", old.ID, got)
		}
		nr.Replaces = []int64{old.ID}
		rec, b := mustReserve(t, s, nr)
		if b.Used != 2 {
			t.Errorf("budget %+v", b)
		}
		was, _ := s.Get(ctx, old.ID)
		if was.State != Replaced || was.ReplacedBy != rec.ID || !was.ReplacedAt.Equal(rec.ReservedAt) || was.ChainPEM == "" {
			t.Fatalf("replaced record %+v (new %d at %v)", was, rec.ID, rec.ReservedAt)
		}
		wantErr(t, s.Advance(ctx, old.ID, Verified), ErrState)
		wantErr(t, s.Issue(ctx, old.ID, certFor("x")), ErrState)
		_, err = s.Live(ctx, sum("key1"))
		wantErr(t, err, ErrNotFound)
		live, err := s.Live(ctx, sum("key2"))
		if err != nil || live.ID != rec.ID {
			t.Fatalf("Live = %+v, %v", live, err)
		}
		// Reprovision with the same key: the old record is replaced by the new one.
		if err := s.Issue(ctx, rec.ID, certFor("key2")); err != nil {
			t.Fatal(err)
		}
		same := res("key2", "SN1", "dak", 0)
		same.Replaces = []int64{rec.ID, old.ID} // an already replaced record is left alone
		rec3, _ := mustReserve(t, s, same)
		if rec3.ID == rec.ID {
			t.Fatal("replacing a record reused it")
		}
		if got, _ := s.Get(ctx, rec.ID); got.State != Replaced || got.ReplacedBy != rec3.ID {
			t.Errorf("record %d: %+v", rec.ID, got)
		}
		if got, _ := s.Get(ctx, old.ID); got.ReplacedBy != rec.ID {
			t.Errorf("re-replacing changed record %d: %+v", old.ID, got)
		}
		// A device id is matched only when given; a record without one does not block others.
		provision(t, s, res("key9", "", "dak", 0))
		provision(t, s, res("key10", "", "dak", 0))
		noProblems(t, s)
	})

	t.Run("Budget", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		dak := sum("dak")
		if b, err := s.Budget(ctx, dak); err != nil || b != (Budget{DAKSHA256: dak}) {
			t.Fatalf("Budget of an unknown DAK = %+v, %v", b, err)
		}
		for i := range 3 {
			_, b := mustReserve(t, s, res(fmt.Sprint("d", i), "", "dak", 3))
			if b.Used != int64(i+1) || b.Max != 3 {
				t.Fatalf("reservation %d: budget %+v", i, b)
			}
		}
		n := f.scalar(t, "SELECT COUNT(*) FROM records")
		_, b, err := s.Reserve(ctx, res("d3", "", "dak", 3))
		wantErr(t, err, ErrBudgetExhausted)
		if b.Used != 3 || b.Max != 3 || !strings.Contains(err.Error(), "3 of 3") {
			t.Errorf("exhausted: budget %+v, error %v", b, err)
		}
		if got := f.scalar(t, "SELECT COUNT(*) FROM records"); got != n {
			t.Errorf("an exhausted reservation wrote a record: %d records, want %d", got, n)
		}
		// A reservation again for a reserved device also needs a signature.
		_, _, err = s.Reserve(ctx, res("d0", "", "dak", 3))
		wantErr(t, err, ErrBudgetExhausted)
		if got := f.scalar(t, "SELECT signatures FROM records WHERE id = 1"); got != 1 {
			t.Errorf("an exhausted retry counted a signature: %d", got)
		}
		// The maximum given applies: raising it lets more through.
		if _, b := mustReserve(t, s, res("d3", "", "dak", 4)); b.Used != 4 || b.Max != 4 {
			t.Errorf("after raising: %+v", b)
		}
		// <= 0: unlimited, still counted.
		for i := range 5 {
			mustReserve(t, s, res(fmt.Sprint("u", i), "", "unlimited", 0))
		}
		if b, _ := s.Budget(ctx, sum("unlimited")); b.Used != 5 || b.Max != 0 {
			t.Errorf("unlimited budget %+v", b)
		}
		if _, _, err := s.Reserve(ctx, Reservation{DeviceKey: "k"}); err == nil {
			t.Error("a reservation without a DAK succeeded")
		}
		noProblems(t, s)
	})

	t.Run("ReserveIssued", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		r := res("dev1", "SN1", "dak", 3)
		c := certFor("dev1")
		rec, b, err := s.ReserveIssued(ctx, r, c)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != Issued || rec.Signatures != 1 || rec.CertSHA256 != c.CertSHA256 || rec.ChainPEM != c.ChainPEM ||
			rec.Serial != c.Serial || rec.Subject != c.Subject || !rec.IssuedAt.Equal(rec.ReservedAt) || rec.DeviceID != "SN1" {
			t.Fatalf("record issued at once %+v", rec)
		}
		recent(t, "ReservedAt", rec.ReservedAt)
		if got, err := s.Get(ctx, rec.ID); err != nil || !reflect.DeepEqual(got, rec) {
			t.Fatalf("Get = %+v, %v; want what ReserveIssued returned, %+v", got, err, rec)
		}
		if b != (Budget{DAKSHA256: r.DAKSHA256, Used: 1, Max: 3}) {
			t.Errorf("budget %+v", b)
		}
		// The key's chain is recorded: another signature for it is refused and not counted.
		_, _, err = s.ReserveIssued(ctx, r, certFor("dev1 again"))
		wantErr(t, err, ErrLiveRecord)
		if b, _ := s.Budget(ctx, r.DAKSHA256); b.Used != 1 {
			t.Errorf("a refused signature counted: %+v", b)
		}
		// A reservation a crash left behind is issued under the same record, signed once more.
		r2 := res("dev2", "", "dak", 3)
		first, _ := mustReserve(t, s, r2)
		rec2, b, err := s.ReserveIssued(ctx, r2, certFor("dev2"))
		if err != nil {
			t.Fatal(err)
		}
		if rec2.ID != first.ID || rec2.State != Issued || rec2.Signatures != 2 || b.Used != 3 {
			t.Fatalf("reserved record issued: %+v, budget %+v", rec2, b)
		}
		// Budget used up: nothing is written, but a key with a chain is still told so first.
		n := f.scalar(t, "SELECT COUNT(*) FROM records")
		_, b, err = s.ReserveIssued(ctx, res("dev3", "", "dak", 3), certFor("dev3"))
		wantErr(t, err, ErrBudgetExhausted)
		if b.Used != 3 || b.Max != 3 {
			t.Errorf("exhausted: budget %+v", b)
		}
		if got := f.scalar(t, "SELECT COUNT(*) FROM records"); got != n {
			t.Errorf("an exhausted ReserveIssued wrote a record: %d records, want %d", got, n)
		}
		_, _, err = s.ReserveIssued(ctx, r, certFor("dev1 at the end"))
		wantErr(t, err, ErrLiveRecord)
		// A reprovision replaces the old record in the same transaction.
		nr := res("dev1-newkey", "SN1", "dak", 0)
		nr.Replaces = []int64{rec.ID}
		rec3, _, err := s.ReserveIssued(ctx, nr, certFor("dev1-newkey"))
		if err != nil {
			t.Fatal(err)
		}
		if old, _ := s.Get(ctx, rec.ID); old.State != Replaced || old.ReplacedBy != rec3.ID {
			t.Errorf("replaced record %+v", old)
		}
		if _, _, err := s.ReserveIssued(ctx, res("dev4", "", "dak", 0), Certificate{CertSHA256: "x"}); err == nil {
			t.Error("ReserveIssued without a chain succeeded")
		}
		// Goroutines racing with signatures for one key: one is recorded, the others refused.
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		start := make(chan struct{})
		for i := range 6 {
			wg.Go(func() {
				<-start
				_, _, err := s.ReserveIssued(ctx, res("one", "", "dak-one", 0), certFor(fmt.Sprint("one-", i)))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case !errors.Is(err, ErrLiveRecord):
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		if b, _ := s.Budget(ctx, sum("dak-one")); won != 1 || b.Used != 1 {
			t.Errorf("6 signatures for one key: %d recorded, budget %+v; want 1", won, b)
		}
		noProblems(t, s)
	})

	t.Run("Queries", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		a := provision(t, s, res("a", "SNA", "dak", 0))
		br := res("b", "", "dak", 0)
		br.Target = "dut2"
		b, _ := mustReserve(t, s, br)
		cr := res("c", "SNA", "dak", 0)
		cr.Replaces = []int64{a.ID}
		c, _ := mustReserve(t, s, cr)
		ids := func(recs []Record, err error) []int64 {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			var out []int64
			for _, r := range recs {
				out = append(out, r.ID)
			}
			return out
		}
		for _, tc := range []struct {
			f    Filter
			want []int64
		}{
			{Filter{}, []int64{a.ID, b.ID, c.ID}},
			{Filter{DeviceKey: sum("a")}, []int64{a.ID}},
			{Filter{DeviceID: "SNA"}, []int64{a.ID, c.ID}},
			{Filter{DeviceID: "SNA", LiveOnly: true}, []int64{c.ID}},
			{Filter{Target: "dut2"}, []int64{b.ID}},
			{Filter{State: Reserved}, []int64{b.ID, c.ID}},
			{Filter{State: Replaced}, []int64{a.ID}},
			{Filter{LiveOnly: true}, []int64{b.ID, c.ID}},
			{Filter{Target: "dut1", State: Verified}, nil},
			{Filter{DeviceKey: "nobody"}, nil},
		} {
			if got := ids(s.List(ctx, tc.f)); !slices.Equal(got, tc.want) {
				t.Errorf("List(%+v) = %v, want %v", tc.f, got, tc.want)
			}
		}
		all, _ := s.List(ctx, Filter{})
		full, _ := s.Get(ctx, a.ID)
		if !reflect.DeepEqual(all[0], *full) {
			t.Errorf("List and Get differ:\n%+v\n%+v", all[0], *full)
		}
		_, err := s.Get(ctx, 12345)
		wantErr(t, err, ErrNotFound)
		_, err = s.Live(ctx, sum("nobody"))
		wantErr(t, err, ErrNotFound)
		if l, err := s.Live(ctx, sum("b")); err != nil || l.ID != b.ID {
			t.Errorf("Live(b) = %+v, %v", l, err)
		}
	})

	t.Run("Import", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		base := time.Date(2025, 6, 1, 12, 0, 0, 987654000, time.UTC)
		c := certFor("imp")
		r := Record{ID: 77, DeviceKey: sum("imp"), DeviceID: "SNI", Target: "old", Station: "st0", RunID: "legacy",
			DAKSHA256: sum("dak"), CSRSHA256: sum("csr"), State: Verified, Signatures: 2, Serial: c.Serial,
			CertSHA256: c.CertSHA256, Subject: c.Subject, NotBefore: c.NotBefore, NotAfter: c.NotAfter, ChainPEM: c.ChainPEM,
			ReservedAt: base, IssuedAt: base.Add(time.Second), StoredAt: base.Add(2 * time.Second),
			VerifiedAt: base.Add(3 * time.Second), ReplacedBy: 99}
		ok, err := s.Import(ctx, r)
		if err != nil || !ok {
			t.Fatalf("Import = %v, %v", ok, err)
		}
		ok, err = s.Import(ctx, r)
		if err != nil || ok {
			t.Fatalf("second Import = %v, %v; want skipped", ok, err)
		}
		recs, _ := s.List(ctx, Filter{})
		if len(recs) != 1 {
			t.Fatalf("%d records", len(recs))
		}
		got := recs[0]
		want := r
		want.ID, want.ReplacedBy = got.ID, 0
		want.NotBefore, want.NotAfter = want.NotBefore.Truncate(time.Microsecond), want.NotAfter.Truncate(time.Microsecond)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("imported\n%+v\nwant\n%+v", got, want)
		}
		if b, _ := s.Budget(ctx, sum("dak")); b.Used != 2 {
			t.Errorf("budget %+v, want the imported 2 signatures", b)
		}
		// A live record colliding with one the ledger has.
		dup := r
		dup.CertSHA256, dup.Serial = sum("another cert"), "0B"
		_, err = s.Import(ctx, dup)
		wantErr(t, err, ErrLiveRecord)
		// History: a replaced record of the same device goes in.
		dup.State = Replaced
		dup.ReplacedAt = base.Add(time.Hour)
		if ok, err := s.Import(ctx, dup); err != nil || !ok {
			t.Fatalf("Import of a replaced record = %v, %v", ok, err)
		}
		for _, bad := range []Record{
			{DeviceKey: "k", DAKSHA256: "d", State: "bogus"},
			{DeviceKey: "k", DAKSHA256: "d", State: Issued}, // no chain
			{DeviceKey: "k", DAKSHA256: "d", State: Reserved, Signatures: -1},
			{DAKSHA256: "d", State: Reserved},
		} {
			if _, err := s.Import(ctx, bad); err == nil {
				t.Errorf("Import(%+v) succeeded", bad)
			}
		}
		noProblems(t, s)
	})

	t.Run("SetBudgetFloor", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		mustReserve(t, s, res("a", "", "dak", 0))
		if err := s.SetBudgetFloor(ctx, sum("dak"), 10); err != nil {
			t.Fatal(err)
		}
		if b, _ := s.Budget(ctx, sum("dak")); b.Used != 10 {
			t.Errorf("after floor 10: %+v", b)
		}
		if err := s.SetBudgetFloor(ctx, sum("dak"), 4); err != nil {
			t.Fatal(err)
		}
		if b, _ := s.Budget(ctx, sum("dak")); b.Used != 10 {
			t.Errorf("a lower floor lowered the count: %+v", b)
		}
		if err := s.SetBudgetFloor(ctx, sum("new dak"), 7); err != nil {
			t.Fatal(err)
		}
		if b, _ := s.Budget(ctx, sum("new dak")); b.Used != 7 {
			t.Errorf("floor of a new DAK: %+v", b)
		}
		if _, b := mustReserve(t, s, res("b", "", "new dak", 8)); b.Used != 8 {
			t.Errorf("reservation above the floor: %+v", b)
		}
		_, _, err := s.Reserve(ctx, res("c", "", "new dak", 8))
		wantErr(t, err, ErrBudgetExhausted)
		// Signatures made without a record are accounted for: Check balances.
		noProblems(t, s)
	})

	t.Run("Check", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		a := provision(t, s, res("a", "SNA", "dak", 0))
		b := provision(t, s, res("b", "SNB", "dak", 0))
		cr := res("c", "SNA", "dak", 0)
		cr.Replaces = []int64{a.ID}
		c := provision(t, s, cr)
		noProblems(t, s)

		check := func(kind string, id int64) {
			t.Helper()
			p, err := s.Check(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range p {
				if q.Kind == kind && q.RecordID == id && q.Detail != "" {
					return
				}
			}
			t.Fatalf("Check = %+v, want a %s of record %d", p, kind, id)
		}

		f.raw(t, "UPDATE daks SET used = used + 2")
		p, _ := s.Check(ctx)
		if len(p) != 1 || p[0].Kind != ProblemBudgetMismatch || !strings.Contains(p[0].Detail, "used 5") {
			t.Fatalf("after raising used by hand: %+v", p)
		}
		f.raw(t, "UPDATE daks SET used = used - 2")
		noProblems(t, s)

		f.raw(t, fmt.Sprintf("UPDATE records SET chain_pem = '' WHERE id = %d", b.ID))
		check(ProblemMissingChain, b.ID)
		f.raw(t, fmt.Sprintf("UPDATE records SET chain_pem = 'x' WHERE id = %d", b.ID))
		noProblems(t, s)

		// The partial unique indexes would refuse a second live record; a hand edit drops them.
		f.raw(t, "DROP INDEX records_live_device_key")
		f.raw(t, "DROP INDEX records_live_device_id")
		f.raw(t, fmt.Sprintf("UPDATE records SET state = 'verified' WHERE id = %d", a.ID))
		p, _ = s.Check(ctx)
		kinds := 0
		for _, q := range p {
			if q.Kind == ProblemTwoLive && q.RecordID == c.ID {
				kinds++ // device id SNA: a and c
			}
		}
		if kinds != 1 || len(p) != 1 {
			t.Fatalf("two live records of device id SNA: %+v", p)
		}
		f.raw(t, fmt.Sprintf("UPDATE records SET device_key = '%s' WHERE id = %d", sum("b"), a.ID))
		f.raw(t, fmt.Sprintf("UPDATE records SET device_id = 'SNB' WHERE id = %d", c.ID))
		check(ProblemTwoLive, b.ID) // device key b: a then b
		check(ProblemTwoLive, c.ID) // device id SNB: b then c

		f.raw(t, fmt.Sprintf("UPDATE records SET signatures = 5 WHERE id = %d", c.ID))
		check(ProblemBudgetMismatch, 0)
	})

	t.Run("Concurrent", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		// Rounds of goroutines released together against a small budget: each round races at
		// the budget's edge, where a check and an update that are not one are caught out.
		const rounds, workers, max = 12, 8, 3
		for round := range rounds {
			dak := fmt.Sprint("dak", round)
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok, exhausted := 0, 0
			start := make(chan struct{})
			for i := range workers {
				wg.Go(func() {
					<-start
					_, _, err := s.Reserve(ctx, res(fmt.Sprint("g", round, "-", i), "", dak, max))
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						ok++
					case errors.Is(err, ErrBudgetExhausted):
						exhausted++
					default:
						t.Error(err)
					}
				})
			}
			close(start)
			wg.Wait()
			if ok != max || exhausted != workers-max {
				t.Errorf("round %d: %d goroutines against a budget of %d: %d reserved, %d exhausted", round, workers, max, ok, exhausted)
			}
			if b, _ := s.Budget(ctx, sum(dak)); b.Used != max {
				t.Errorf("round %d: budget %+v", round, b)
			}
		}
		// Goroutines reserving for one device share one record.
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 6 {
			wg.Go(func() {
				<-start
				if _, _, err := s.Reserve(ctx, res("one", "SN1", "dak-one", 0)); err != nil {
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		recs, _ := s.List(ctx, Filter{DeviceKey: sum("one")})
		if len(recs) != 1 || recs[0].Signatures != 6 {
			t.Errorf("6 reservations of one device: %+v", recs)
		}
		noProblems(t, s)
	})

	t.Run("Processes", func(t *testing.T) {
		if testing.Short() {
			t.Skip("spawns processes")
		}
		f := newFix(t)
		s := f.open(t)
		const rounds, n, max = 10, 4, 5 // each child tries n per round; together they exceed max
		total := raceProcesses(t, f.driver, f.loc, 2, rounds, n, max)
		if total != rounds*max {
			t.Errorf("2 processes x %d rounds x %d reservations against budgets of %d: %d reserved, want %d", rounds, n, max, total, rounds*max)
		}
		for r := range rounds {
			if b, _ := s.Budget(ctx, fmt.Sprint("dak-shared-", r)); b.Used != max {
				t.Errorf("round %d: budget %+v, want %d used", r, b, max)
			}
		}
		if got := f.scalar(t, "SELECT COUNT(*) FROM records"); got != rounds*max {
			t.Errorf("%d records, want %d", got, rounds*max)
		}
		noProblems(t, s)
	})

	t.Run("SchemaTooNew", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		mustReserve(t, s, res("a", "", "dak", 0))
		s.Close()
		f.raw(t, fmt.Sprintf("INSERT INTO ledger_migrations (version, description, applied_at) VALUES (%d, 'from the future', %s)",
			SchemaVersion+1, map[string]string{"sqlite": "'2030-01-01T00:00:00.000000Z'", "postgres": "now()"}[f.driver]))
		_, err := openLoc(f.driver, f.loc)
		wantErr(t, err, ErrSchemaTooNew)
		if !strings.Contains(err.Error(), strconv.Itoa(SchemaVersion+1)) {
			t.Errorf("error does not name the version: %v", err)
		}
		if got := f.scalar(t, "SELECT COUNT(*) FROM ledger_migrations"); got != SchemaVersion+1 {
			t.Errorf("%d migration rows", got)
		}
	})

	t.Run("Reopen", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		rec := provision(t, s, res("a", "SNA", "dak", 0))
		s.Close()
		s2 := f.open(t)
		got, err := s2.Get(ctx, rec.ID)
		if err != nil || !reflect.DeepEqual(got, rec) {
			t.Fatalf("after reopening: %+v, %v; want %+v", got, err, rec)
		}
		if got := f.scalar(t, "SELECT MAX(version) FROM ledger_migrations"); got != SchemaVersion {
			t.Errorf("schema version %d", got)
		}
	})

	t.Run("ExportAgreesWithCLI", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		a := provision(t, s, res("a", "SN,A \"quoted\"", "dak", 0))
		mustReserve(t, s, res("b", "", "dak", 0))
		cr := res("c", "SN,A \"quoted\"", "dak", 0)
		cr.Replaces = []int64{a.ID}
		mustReserve(t, s, cr)
		recs, err := s.List(ctx, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := WriteJSONL(&buf, recs); err != nil {
			t.Fatal(err)
		}
		var exported []map[string]any
		sc := bufio.NewScanner(&buf)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			exported = append(exported, m)
		}
		rows := f.cli(t, `SELECT id, serial, cert_sha256, state, target,
			CASE WHEN device_id <> '' THEN device_id ELSE device_key END AS device, signatures,
			`+f.ts("reserved_at")+` AS reserved_at, `+f.ts("issued_at")+` AS issued_at, COALESCE(replaced_by, 0) AS replaced_by,
			device_key, dak_sha256, subject, `+f.ts("not_after")+` AS not_after, chain_pem
			FROM records ORDER BY reserved_at, id`)
		if len(rows) != len(exported)+1 {
			t.Fatalf("the CLI shows %d rows, the export %d lines:\n%v", len(rows)-1, len(exported), rows)
		}
		want := []string{"id", "serial", "cert_sha256", "state", "target", "device", "signatures", "reserved_at", "issued_at", "replaced_by",
			"device_key", "dak_sha256", "subject", "not_after", "chain_pem"}
		if !slices.Equal(rows[0], want) {
			t.Fatalf("CLI header %v", rows[0])
		}
		str := func(v any) string {
			switch v := v.(type) {
			case nil:
				return ""
			case float64:
				return strconv.FormatInt(int64(v), 10)
			}
			return fmt.Sprint(v)
		}
		ts := func(v any) string {
			if v == nil {
				return ""
			}
			tm, err := time.Parse(time.RFC3339Nano, v.(string))
			if err != nil {
				t.Fatal(err)
			}
			return tm.UTC().Format(sqliteTimeFormat)
		}
		for i, m := range exported {
			got := []string{str(m["id"]), str(m["serial"]), str(m["fingerprint"]), str(m["state"]), str(m["target"]),
				str(m["device"]), str(m["signatures"]), ts(m["reserved_at"]), ts(m["issued_at"]), str(m["replaced_by"]),
				str(m["device_key"]), str(m["dak_sha256"]), str(m["subject"]), ts(m["not_after"]), str(m["chain_pem"])}
			if got[9] == "" {
				got[9] = "0"
			}
			if !slices.Equal(got, rows[i+1]) {
				t.Errorf("record %d:\nexport %q\nCLI    %q", i, got, rows[i+1])
			}
		}
		if exported[0]["device"] != "SN,A \"quoted\"" || exported[1]["device"] != sum("b") || exported[0]["state"] != "replaced" {
			t.Errorf("export: %v", exported)
		}
	})

	t.Run("SetupPIN", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		calls := 0
		gen := func(pin string) func() (string, error) {
			return func() (string, error) { calls++; return pin, nil }
		}
		pin, err := s.SetupPIN(ctx, "k1", gen("Abc123xyz"))
		if err != nil || pin != "Abc123xyz" || calls != 1 {
			t.Fatalf("first SetupPIN = %q, %v (%d calls)", pin, err, calls)
		}
		// Asked again, the recorded PIN comes back and no new one is made.
		pin, err = s.SetupPIN(ctx, "k1", gen("OTHER0000"))
		if err != nil || pin != "Abc123xyz" || calls != 1 {
			t.Fatalf("second SetupPIN = %q, %v (%d calls)", pin, err, calls)
		}
		failing := func() (string, error) { return "", errors.New("no entropy") }
		if _, err := s.SetupPIN(ctx, "k2", failing); err == nil || !strings.Contains(err.Error(), "no entropy") {
			t.Errorf("a failing generator: %v", err)
		}
		if got := f.scalar(t, "SELECT COUNT(*) FROM setup_pins"); got != 1 {
			t.Errorf("%d setup PINs recorded, want 1", got)
		}
		// Concurrent callers for one new key all get the one PIN recorded.
		var wg sync.WaitGroup
		pins := make([]string, 8)
		for i := range pins {
			wg.Go(func() {
				p, err := s.SetupPIN(ctx, "k3", func() (string, error) { return fmt.Sprintf("PIN%06d", i), nil })
				if err != nil {
					t.Error(err)
				}
				pins[i] = p
			})
		}
		wg.Wait()
		for _, p := range pins {
			if p != pins[0] || p == "" {
				t.Fatalf("concurrent callers got different PINs: %q", pins)
			}
		}
		if got := f.cli(t, "SELECT pin FROM setup_pins WHERE device_key = 'k3'"); len(got) != 2 || got[1][0] != pins[0] {
			t.Errorf("the database holds %q for k3, callers got %q", got, pins[0])
		}
	})

	t.Run("TestRuns", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
		run := func(id, slot string, at time.Time) TestRun {
			return TestRun{ID: id, DUTID: "SN-" + id, Station: "st1", Slot: slot, Operator: "op7", RunID: "r1", StartedAt: at}
		}
		for i, id := range []string{"a", "b", "c"} {
			if err := s.BeginTest(ctx, run(id, fmt.Sprint("slot", i%2), t0.Add(time.Duration(i)*time.Minute))); err != nil {
				t.Fatal(err)
			}
		}
		wantErr(t, s.BeginTest(ctx, run("a", "slot9", t0)), ErrExists)
		got, err := s.GetTest(ctx, "a")
		if err != nil || got.Outcome != TestRunning || got.Slot != "slot0" || !got.StartedAt.Equal(t0) || !got.EndedAt.IsZero() || got.Operator != "op7" {
			t.Fatalf("GetTest(a) = %+v, %v", got, err)
		}
		_, err = s.GetTest(ctx, "zz")
		wantErr(t, err, ErrNotFound)

		rec := []byte(`{"outcome":"PASS","phases":[]}`)
		end := t0.Add(90 * time.Second)
		if err := s.EndTest(ctx, "a", TestPass, end, rec); err != nil {
			t.Fatal(err)
		}
		if err := s.EndTest(ctx, "a", TestPass, end, rec); err != nil {
			t.Errorf("ending again with the same outcome: %v", err)
		}
		wantErr(t, s.EndTest(ctx, "a", TestAborted, end, nil), ErrNotRunning)
		wantErr(t, s.EndTest(ctx, "zz", TestPass, end, nil), ErrNotFound)
		if err := s.EndTest(ctx, "b", TestRunning, end, nil); err == nil {
			t.Error("RUNNING accepted as a final outcome")
		}
		got, err = s.GetTest(ctx, "a")
		if err != nil || got.Outcome != TestPass || !got.EndedAt.Equal(end) || string(got.Record) != string(rec) {
			t.Fatalf("after EndTest: %+v, %v", got, err)
		}

		ids := func(f TestFilter) string {
			runs, err := s.ListTests(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range runs {
				out = append(out, r.ID)
			}
			return strings.Join(out, ",")
		}
		for _, c := range []struct {
			f    TestFilter
			want string
		}{
			{TestFilter{}, "c,b,a"},
			{TestFilter{Limit: 2}, "c,b"},
			{TestFilter{Outcome: TestRunning}, "c,b"},
			{TestFilter{Slot: "slot0"}, "c,a"},
			{TestFilter{DUTID: "SN-b"}, "b"},
			{TestFilter{Station: "st2"}, ""},
		} {
			if got := ids(c.f); got != c.want {
				t.Errorf("ListTests(%+v) = %q, want %q", c.f, got, c.want)
			}
		}
		if got := f.cli(t, "SELECT outcome FROM test_runs WHERE id = 'a'"); len(got) != 2 || got[1][0] != "PASS" {
			t.Errorf("the database holds %q", got)
		}
	})

	t.Run("MigratesVersion1", func(t *testing.T) {
		f := newFix(t)
		s := f.open(t)
		rec := provision(t, s, res("a", "SNA", "dak", 0))
		s.Close()
		// Back to a version 1 ledger, as an earlier release left it.
		f.raw(t, "DROP TABLE setup_pins")
		f.raw(t, "DROP TABLE test_runs")
		f.raw(t, "DELETE FROM ledger_migrations WHERE version = 2")
		s2 := f.open(t)
		if got, err := s2.Get(ctx, rec.ID); err != nil || !reflect.DeepEqual(got, rec) {
			t.Fatalf("after migrating: %+v, %v; want %+v", got, err, rec)
		}
		if got := f.scalar(t, "SELECT MAX(version) FROM ledger_migrations"); got != 2 {
			t.Errorf("schema version %d after migrating", got)
		}
		if _, err := s2.SetupPIN(ctx, "a", func() (string, error) { return "xyz789ABC", nil }); err != nil {
			t.Error(err)
		}
		noProblems(t, s2)
	})
}
