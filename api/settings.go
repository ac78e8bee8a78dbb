package api

import (
	"net/http"

	"github.com/callgate/callgate/provisioning"
)

// Workspace settings (issue 13), agents' SIP credentials and integration
// changes (issue 12).

func (a *API) getOwnWorkspace(w http.ResponseWriter, r *http.Request) error {
	return a.showWorkspace(w, r, principal(r).Workspace)
}

func (a *API) getWorkspace(w http.ResponseWriter, r *http.Request) error {
	return a.showWorkspace(w, r, r.PathValue("id"))
}

func (a *API) showWorkspace(w http.ResponseWriter, r *http.Request, id string) error {
	ws, err := a.svc.GetWorkspaceSettings(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, 200, ws)
	return nil
}

func (a *API) patchOwnWorkspace(w http.ResponseWriter, r *http.Request) error {
	setTarget(r, principal(r).Workspace)
	return a.updateWorkspace(w, r, principal(r).Workspace)
}

func (a *API) patchWorkspace(w http.ResponseWriter, r *http.Request) error {
	return a.updateWorkspace(w, r, r.PathValue("id"))
}

func (a *API) updateWorkspace(w http.ResponseWriter, r *http.Request, id string) error {
	var p provisioning.WorkspacePatch
	if err := decode(w, r, &p); err != nil {
		return err
	}
	ws, err := a.svc.UpdateWorkspaceSettings(r.Context(), id, p)
	if err != nil {
		return err
	}
	writeJSON(w, 200, ws)
	return nil
}

func (a *API) rotateWebhookSecret(w http.ResponseWriter, r *http.Request) error {
	id := principal(r).Workspace
	setTarget(r, id)
	secret, err := a.svc.RotateWebhookSecret(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, 201, map[string]string{"webhook_secret": secret,
		"note": "the secret is shown once; store it now. It signs routing hook requests and deliveries: X-Callgate-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + \".\" + body)>"})
	return nil
}

func (a *API) createSIPCredential(w http.ResponseWriter, r *http.Request) error {
	agent := r.PathValue("id")
	c, err := a.svc.CreateSIPCredential(r.Context(), principal(r), agent)
	if err != nil {
		return err
	}
	setTarget(r, agent+"/"+c.Username)
	writeJSON(w, 201, c)
	return nil
}

func (a *API) listSIPCredentials(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.svc.ListSIPCredentials(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"sip_credentials": cs})
	return nil
}

func (a *API) revokeSIPCredential(w http.ResponseWriter, r *http.Request) error {
	agent, user := r.PathValue("id"), r.PathValue("username")
	setTarget(r, agent+"/"+user)
	if err := a.svc.RevokeSIPCredential(r.Context(), principal(r), agent, user); err != nil {
		return err
	}
	w.WriteHeader(204)
	return nil
}

func (a *API) patchIntegration(w http.ResponseWriter, r *http.Request) error {
	var p provisioning.IntegrationPatch
	if err := decode(w, r, &p); err != nil {
		return err
	}
	it, err := a.svc.UpdateIntegration(r.Context(), principal(r), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	writeJSON(w, 200, it)
	return nil
}
