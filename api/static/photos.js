// Photos on a work order, shared by the technician's page and the printable order: the
// order's attachments, each fetched with the bearer token (no file is served without one)
// and shown from a data: URL (the Content-Security-Policy allows img-src 'self' data:);
// an upload form (camera on a phone) for those who may add one.
"use strict";
// sections: one per order and mode, reused across the pages' live re-renders, so that a
// photo chosen but not yet uploaded is not lost when the card is drawn again.
const Photos = { cache: new Map(), lists: new Map(), sections: new Map() };

async function photoUrl(id) {
  if (Photos.cache.has(id)) return Photos.cache.get(id);
  const res = await fetch(`${API}/attachments/${id}`, { headers: { Authorization: `Bearer ${sessionStorage.getItem("token")}` } });
  if (!res.ok) throw new Error(`attachment ${id}: ${res.status}`);
  const blob = await res.blob();
  const url = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
  Photos.cache.set(id, url);
  return url;
}

async function fillPhotos(box, orderId) {
  const list = await api(`/work-orders/${orderId}/attachments`);
  Photos.lists.set(orderId, list);
  box.replaceChildren(...list.map((a) => {
    const fig = el("figure", { className: "photo", dataset: { attachmentId: a.id, stage: a.stage } });
    const caption = el("figcaption", {}, `${word("stage", a.stage)}${a.step_seq ? " · " + t("Step %(n)s", { n: a.step_seq }) : ""} · ${a.uploaded_by} ${stamp(a.uploaded_at)}`);
    if (a.content_type.startsWith("image/")) {
      const img = el("img", { alt: a.filename });
      photoUrl(a.id).then((u) => { img.src = u; }, showError);
      fig.append(img, caption);
    } else {
      fig.append(el("span", {}, `📄 ${a.filename}`), caption);
    }
    return fig;
  }));
}

function photoSection(orderId, canUpload, onUploaded) {
  const key = `${orderId}:${canUpload}`;
  if (Photos.sections.has(key)) {
    const kept = Photos.sections.get(key);
    fillPhotos(kept.querySelector(".photos"), orderId).catch(showError);  // someone else's
    return kept;
  }
  const section = buildPhotoSection(orderId, canUpload, onUploaded);
  Photos.sections.set(key, section);
  return section;
}

function buildPhotoSection(orderId, canUpload, onUploaded) {
  const box = el("div", { className: "photos" });
  fillPhotos(box, orderId).catch(showError);
  if (!canUpload) return el("section", { className: "photo-section" }, el("h4", {}, t("Photos")), box);
  const file = el("input", { type: "file", accept: "image/*,application/pdf", capture: "environment", name: "file" });
  file.setAttribute("aria-label", t("Photo file"));
  const stage = el("select", { name: "stage" }, el("option", { value: "before" }, word("stage", "before")),
    el("option", { value: "after" }, word("stage", "after")), el("option", { value: "other" }, word("stage", "other")));
  stage.setAttribute("aria-label", t("Stage"));
  const status = el("span", { className: "ok", role: "status" });
  const send = el("button", { type: "button", className: "secondary" }, t("Upload photo"));
  send.addEventListener("click", async () => {
    if (!file.files[0]) return;
    try {
      if (window.outboxAdd) {  // the technician's page: through the outbox, offline too
        await outboxAdd({ method: "POST", path: `/work-orders/${orderId}/attachments`, label: t("Photo"),
                          order: orderId, photo: { file: file.files[0], name: file.files[0].name, stage: stage.value } });
      } else {
        const form = new FormData();
        form.append("file", file.files[0]);
        form.append("stage", stage.value);
        await api(`/work-orders/${orderId}/attachments`, { method: "POST", body: form });
      }
      status.textContent = navigator.onLine ? t("Uploaded") : t("Kept on the phone"); file.value = ""; showError(null);
      await fillPhotos(box, orderId);
      if (onUploaded) onUploaded();
    } catch (e) { status.textContent = ""; showError(e); }
  });
  return el("section", { className: "photo-section" }, el("h4", {}, t("Photos")), box,
    el("div", { className: "upload" }, file, stage, send, status));
}
