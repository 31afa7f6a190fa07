// The review page: look a document up, correct its tags, watch the model and the learner.
// Plain DOM and fetch; every server text goes in through textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let shown = null;  // the document on screen: {id, result}

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function api(method, path, body) {
  const headers = {"Accept": "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = $("token").value.trim();
  if (token && method !== "GET") headers["Authorization"] = "Bearer " + token;
  const reply = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const answer = await reply.json().catch(() => ({detail: reply.statusText}));
  if (!reply.ok) throw new Error(answer.detail || ("HTTP " + reply.status));
  return answer;
}

const docPath = (id) => "v1/documents/" + id.split("/").map(encodeURIComponent).join("/");
const when = (ms) => new Date(ms).toLocaleString();

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function showTags(tags) {
  const body = $("tags").tBodies[0];
  body.replaceChildren();
  for (const tag of tags) {
    const row = body.insertRow();
    row.dataset.label = tag.label;
    const box = document.createElement("input");
    Object.assign(box, {type: "checkbox", value: tag.label, title: "remove " + tag.label});
    row.insertCell().append(box);
    cell(row, tag.label);
    const score = cell(row, "", "score");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = Math.round(tag.score * 100) + "px";
    score.append(bar, document.createTextNode(tag.score.toFixed(3)));
  }
}

async function openDocument(id) {
  try {
    const doc = await api("GET", docPath(id));
    shown = doc;
    $("document").hidden = false;
    $("doc-shown-id").textContent = doc.id;
    $("doc-text").textContent = doc.text ?? "(the text has expired: TAGGER_DOC_TTL_S)";
    $("doc-model").textContent = doc.result ? doc.result.model : "–";
    $("doc-src").textContent = doc.result ? doc.result.src : "–";
    $("doc-time").textContent = doc.result ? when(doc.result.ts) : "–";
    showTags(doc.result ? doc.result.tags : []);
    $("add-labels").value = "";
    say("");
  } catch (err) {
    say(err.message, true);
  }
}

async function submitCorrection(event) {
  event.preventDefault();
  const remove = [...$("tags").querySelectorAll("input:checked")].map((box) => box.value);
  const add = $("add-labels").value.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    const done = await api("POST", "v1/corrections", {id: shown.id, add, remove, user: $("user").value.trim()});
    say(`Correction of ${done.id} queued for the learner (entry ${done.entry}).`);
    sessionStorage.setItem("tagger.user", $("user").value.trim());
    refreshStatus();
  } catch (err) {
    say(err.message, true);
  }
}

async function refreshRecent() {
  try {
    const {documents} = await api("GET", "v1/recent?limit=50");
    const filter = $("recent-filter").value.trim();
    const list = $("recent");
    list.replaceChildren();
    for (const doc of documents.filter((d) => d.id.includes(filter))) {
      const item = document.createElement("li");
      item.dataset.id = doc.id;
      item.textContent = doc.id;
      const detail = document.createElement("small");
      const top = doc.result ? doc.result.tags.slice(0, 3).map((t) => t.label).join(", ") : "(tags expired)";
      detail.textContent = `${when(doc.ts)} · ${top}`;
      item.append(detail);
      item.addEventListener("click", () => { $("doc-id").value = doc.id; openDocument(doc.id); });
      list.append(item);
    }
    $("recent-empty").hidden = documents.length > 0;
  } catch (err) {
    say(err.message, true);
  }
}

function showVersions(models) {
  $("live-model").textContent = models.live + (models.served !== models.live ? ` (this API: ${models.served})` : "");
  const body = $("versions").tBodies[0];
  body.replaceChildren();
  for (const v of models.versions.slice().reverse()) {
    const row = body.insertRow();
    cell(row, v.current ? "★" : "");
    cell(row, v.version);
    cell(row, v.created.slice(0, 10));
    cell(row, v.valid_p1 === null ? "–" : (v.valid_p1 * 100).toFixed(2));
    cell(row, String(v.labels));
  }
}

function showLearner(learner) {
  const q = learner.queue;
  const facts = [["corrections waiting", q.waiting ?? "?"], ["being learnt", q.pending],
                 ["examples stored", q.examples], ["rejected in a row", learner.rejected_in_a_row],
                 ["learner running", q.learner_seen ? "seen" : "never seen"]];
  for (const [reason, count] of Object.entries(q.rejected)) facts.push([`rejected: ${reason}`, count]);
  $("queue").replaceChildren(...facts.flatMap(([name, value]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = String(value);
    return [dt, dd];
  }));
  $("rounds").replaceChildren(...learner.rounds.map((r) => {
    const item = document.createElement("li");
    item.textContent = `${new Date(r.ts * 1000).toLocaleString()}: ${r.action} ${r.version}` +
      (r.reason ? ` (${r.reason})` : "");
    return item;
  }));
}

async function refreshStatus() {
  try {
    const [models, learner, labels] = await Promise.all(
      [api("GET", "v1/models"), api("GET", "v1/learner"), api("GET", "v1/labels")]);
    showVersions(models);
    showLearner(learner);
    $("known-labels").replaceChildren(...labels.labels.map((name) => Object.assign(
      document.createElement("option"), {value: name})));
  } catch (err) {
    say(err.message, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("user").value = sessionStorage.getItem("tagger.user") || "";
  $("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    openDocument($("doc-id").value.trim());
  });
  $("correction-form").addEventListener("submit", submitCorrection);
  $("refresh-recent").addEventListener("click", refreshRecent);
  $("recent-filter").addEventListener("input", refreshRecent);
  refreshRecent();
  refreshStatus();
  setInterval(refreshStatus, 15000);
});
