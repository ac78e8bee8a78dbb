package console

import (
	"net/http"
	"strconv"

	"github.com/callgate/callgate/provisioning"
)

// ledgerPageSize is how many ledger entries a credits page shows.
const ledgerPageSize = 25

type creditsView struct {
	Balance          int64
	Entries          []provisioning.LedgerEntry
	Page, Pages      int
	Total            int
	PrevPage, NextPg int
}

// creditsPage shows the balance and the ledger, newest first, a page at a time.
func (c *Console) creditsPage(w http.ResponseWriter, r *http.Request, s *session) {
	entries, err := c.svc.Ledger(r.Context(), s.Workspace)
	if err != nil {
		fe := c.fail(r, err)
		c.render(w, r, fe.Status, "credits", fe, creditsView{})
		return
	}
	v := creditsView{Total: len(entries)}
	if len(entries) > 0 {
		v.Balance = entries[len(entries)-1].Balance
	}
	v.Pages = (len(entries) + ledgerPageSize - 1) / ledgerPageSize
	if v.Pages == 0 {
		v.Pages = 1
	}
	v.Page, _ = strconv.Atoi(r.URL.Query().Get("page"))
	if v.Page < 1 {
		v.Page = 1
	}
	if v.Page > v.Pages {
		v.Page = v.Pages
	}
	// Newest first: page 1 holds the last entries.
	hi := len(entries) - (v.Page-1)*ledgerPageSize
	lo := max(hi-ledgerPageSize, 0)
	for i := hi - 1; i >= lo; i-- {
		v.Entries = append(v.Entries, entries[i])
	}
	if v.Page > 1 {
		v.PrevPage = v.Page - 1
	}
	if v.Page < v.Pages {
		v.NextPg = v.Page + 1
	}
	c.render(w, r, http.StatusOK, "credits", nil, v)
}
