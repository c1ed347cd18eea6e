// roster's web dashboard. Vanilla JS, no framework, nothing loaded from
// elsewhere. Every agent's text (names, log lines, errors) is set with
// textContent, never as HTML; terminal escapes are stripped for display.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const meta = (name) => {
    const tag = document.querySelector('meta[name="' + name + '"]');
    return tag ? tag.getAttribute("content") : "";
  };
  const csrf = meta("csrf-token");
  const readOnly = meta("roster-read-only") === "true";
  const $ = (selector) => document.querySelector(selector);
  const body = $("[data-agents] tbody");
  const filterBox = $("[data-filter]");
  const logPane = $("[data-log]");
  const logAgent = $("[data-log-agent]");
  const live = $("[data-live]");
  const problemLine = $("[data-problem]");
  const confirmBox = $("[data-confirm-box]");
  const confirmText = $("[data-confirm-text]");
  const confirmButton = $("[data-confirm]");
  const cancelButton = $("[data-cancel]");

  let agents = [];
  let sortKey = "name";
  let sortDown = false;
  let selected = null;
  let logSource = null;
  let pending = null;
  // The log pane keeps to its newest line unless the reader scrolled up.
  let stick = true;
  const rows = new Map();

  // CSI, OSC and other escape sequences, then what control bytes remain.
  const ANSI = /\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;
  const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;
  const clean = (text) => String(text).replace(ANSI, "").replace(CONTROL, "");

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    if (seconds < 60) return seconds + "s";
    if (seconds < 3600) return Math.floor(seconds / 60) + "m" + (seconds % 60) + "s";
    if (seconds < 86400) return Math.floor(seconds / 3600) + "h" + Math.floor((seconds % 3600) / 60) + "m";
    return Math.floor(seconds / 86400) + "d" + Math.floor((seconds % 86400) / 3600) + "h";
  }

  function bytes(value) {
    if (value === null || value === undefined) return "-";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
  }

  function spark(values) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 60 16");
    svg.setAttribute("preserveAspectRatio", "none");
    const points = values.map((v) => (typeof v === "number" ? v : 0));
    if (points.length > 1) {
      const top = Math.max(...points, 1e-9);
      const step = 60 / (points.length - 1);
      const path = document.createElementNS(SVG, "polyline");
      path.setAttribute(
        "points",
        points.map((v, i) => (i * step).toFixed(1) + "," + (15 - (v / top) * 14).toFixed(1)).join(" ")
      );
      svg.appendChild(path);
    }
    return svg;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  const sortValue = {
    name: (a) => a.name,
    state: (a) => a.state,
    health: (a) => a.health,
    uptime: (a) => a.uptime_secs || 0,
    restarts: (a) => a.restarts,
    cpu: (a) => a.cpu_percent || 0,
    memory: (a) => a.memory_bytes || 0,
    release: (a) => a.release || "",
  };

  function shown() {
    const needle = filterBox.value.trim().toLowerCase();
    const list = agents.filter(
      (a) => !needle || a.name.toLowerCase().includes(needle) || String(a.state).includes(needle)
    );
    const key = sortValue[sortKey] || sortValue.name;
    list.sort((a, b) => {
      const x = key(a);
      const y = key(b);
      const order = x < y ? -1 : x > y ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
      return sortDown ? -order : order;
    });
    return list;
  }

  // An agent's copies (`instances`) gathered where the first of them
  // stands, in number order: entries are {agent} or {group, copies}.
  function grouped(list) {
    const out = [];
    const groups = new Map();
    for (const agent of list) {
      if (!agent.instance_of) {
        out.push({ agent });
        continue;
      }
      let group = groups.get(agent.instance_of);
      if (!group) {
        group = { group: agent.instance_of, copies: [] };
        groups.set(agent.instance_of, group);
        out.push(group);
      }
      group.copies.push(agent);
    }
    for (const group of groups.values()) {
      group.copies.sort((x, y) => (x.instance || 0) - (y.instance || 0));
    }
    return out;
  }

  // The line over a group's copies: how many run, and their sums.
  function groupRow(name, copies) {
    const tr = document.createElement("tr");
    tr.className = "group";
    tr.setAttribute("data-group", name);
    const running = copies.filter((a) => a.state === "running").length;
    const health = copies.some((a) => a.health === "unhealthy")
      ? "unhealthy"
      : copies.some((a) => a.health === "healthy")
        ? "healthy"
        : "unknown";
    const sum = (values) => {
      const known = values.filter((v) => typeof v === "number");
      return known.length ? known.reduce((x, y) => x + y, 0) : null;
    };
    const cpu = sum(copies.map((a) => a.cpu_percent));
    tr.appendChild(cell(clean(name), "name"));
    const state = running === copies.length ? "running" : "partial";
    tr.appendChild(cell(running + "/" + copies.length + " running", "state state-" + state));
    tr.appendChild(cell(health, "health health-" + health));
    tr.appendChild(cell(""));
    tr.appendChild(cell(String(copies.reduce((n, a) => n + (a.restarts || 0), 0))));
    tr.appendChild(cell(cpu === null ? "-" : Math.round(cpu * 10) / 10 + "%", "num"));
    tr.appendChild(cell(bytes(sum(copies.map((a) => a.memory_bytes))), "num"));
    for (let i = 0; i < 4; i++) tr.appendChild(cell(""));
    return tr;
  }

  function actionsCell(agent) {
    const td = document.createElement("td");
    td.className = "actions";
    if (readOnly) return td;
    for (const action of ["restart", "stop", "start"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = action;
      button.setAttribute("data-action", action);
      button.addEventListener("click", (event) => {
        event.stopPropagation();
        ask(agent.name, action);
      });
      td.appendChild(button);
    }
    return td;
  }

  function row(agent) {
    const tr = document.createElement("tr");
    tr.setAttribute("data-agent", agent.name);
    if (agent.name === selected) tr.classList.add("selected");
    tr.appendChild(cell(clean(agent.name), "name"));
    tr.appendChild(cell(agent.state, "state state-" + agent.state));
    tr.appendChild(cell(agent.health, "health health-" + agent.health));
    tr.appendChild(cell(duration(agent.uptime_secs)));
    tr.appendChild(cell(String(agent.restarts)));
    const cpu = cell(agent.cpu_percent === null || agent.cpu_percent === undefined ? "-" : agent.cpu_percent + "%", "num");
    cpu.appendChild(spark(agent.cpu || []));
    tr.appendChild(cpu);
    const memory = cell(bytes(agent.memory_bytes), "num");
    memory.appendChild(spark(agent.memory || []));
    tr.appendChild(memory);
    tr.appendChild(cell(clean(agent.release || "-")));
    tr.appendChild(cell((agent.alerts || []).map(clean).join(", "), "alerts"));
    tr.appendChild(cell(clean(agent.last_error || ""), "error"));
    tr.appendChild(actionsCell(agent));
    tr.addEventListener("click", () => follow(agent.name));
    return tr;
  }

  function render() {
    const fragment = document.createDocumentFragment();
    rows.clear();
    const add = (agent, className) => {
      const tr = row(agent);
      if (className) tr.classList.add(className);
      rows.set(agent.name, tr);
      fragment.appendChild(tr);
    };
    for (const entry of grouped(shown())) {
      if (entry.agent) {
        add(entry.agent);
        continue;
      }
      fragment.appendChild(groupRow(entry.group, entry.copies));
      for (const copy of entry.copies) add(copy, "copy");
    }
    body.replaceChildren(fragment);
  }

  function item(parts) {
    const li = document.createElement("li");
    for (const [text, className] of parts) {
      const span = document.createElement("span");
      span.textContent = clean(text);
      if (className) span.className = className;
      li.appendChild(span);
    }
    return li;
  }

  function renderSide(snapshot) {
    const alerts = $("[data-alerts]");
    const alertItems = (snapshot.alerts || []).map((alert) =>
      item([
        [alert.state, "badge " + alert.state],
        [alert.agent || "host", "agent"],
        [alert.name + ": " + alert.summary, ""],
      ])
    );
    if (alertItems.length === 0) alertItems.push(item([["none", "quiet"]]));
    alerts.replaceChildren(...alertItems);
    const events = $("[data-events]");
    const eventItems = (snapshot.events || [])
      .slice()
      .reverse()
      .map((event) =>
        item([
          [String(event.time).slice(11, 19), "time"],
          [event.agent || "daemon", "agent"],
          [event.kind, "kind"],
          [event.detail, ""],
        ])
      );
    events.replaceChildren(...eventItems);
  }

  // How many snapshots this page has shown (tests wait on it).
  let shownCount = 0;

  function show(snapshot) {
    shownCount += 1;
    document.body.setAttribute("data-snapshots", String(shownCount));
    agents = snapshot.agents || [];
    render();
    renderSide(snapshot);
  }

  function problem(text) {
    problemLine.textContent = text;
    problemLine.hidden = !text;
  }

  function ask(name, action) {
    pending = { name, action };
    confirmText.textContent = action + " " + clean(name) + "?";
    confirmBox.hidden = false;
    confirmButton.focus();
  }

  confirmButton.addEventListener("click", async () => {
    if (!pending) return;
    const { name, action } = pending;
    pending = null;
    confirmBox.hidden = true;
    try {
      const answer = await fetch(
        "/web/api/agents/" + encodeURIComponent(name) + "/" + action,
        { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" }
      );
      if (answer.ok) problem("");
      else problem(action + " " + name + ": " + answer.status + " " + (await answer.text()));
    } catch (error) {
      problem(action + " " + name + ": " + error);
    }
  });

  cancelButton.addEventListener("click", () => {
    pending = null;
    confirmBox.hidden = true;
  });

  function follow(name) {
    if (logSource) logSource.close();
    selected = name;
    for (const [agent, tr] of rows) tr.classList.toggle("selected", agent === name);
    logAgent.textContent = clean(name);
    logPane.replaceChildren();
    stick = true;
    logSource = new EventSource("/web/api/logs/" + encodeURIComponent(name));
    logSource.addEventListener("line", (event) => {
      let line;
      try {
        line = JSON.parse(event.data).line;
      } catch (error) {
        return;
      }
      const div = document.createElement("div");
      div.textContent = clean(line);
      logPane.appendChild(div);
      while (logPane.childElementCount > 2000) logPane.firstElementChild.remove();
      if (stick) logPane.scrollTop = logPane.scrollHeight;
    });
    logSource.addEventListener("error", () => {
      if (logSource && logSource.readyState === EventSource.CLOSED) {
        logAgent.textContent = clean(name) + " (not available)";
      }
    });
  }

  logPane.addEventListener("scroll", () => {
    stick = logPane.scrollTop + logPane.clientHeight >= logPane.scrollHeight - 8;
  });

  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.getAttribute("data-sort");
      sortDown = key === sortKey ? !sortDown : false;
      sortKey = key;
      render();
    });
  }
  filterBox.addEventListener("input", render);

  $("[data-logout]").addEventListener("click", async () => {
    try {
      await fetch("/logout", {
        method: "POST",
        headers: { "X-CSRF-Token": csrf },
        credentials: "same-origin",
        redirect: "manual",
      });
    } finally {
      window.location.assign("/");
    }
  });

  // One stream for the whole page. The browser reconnects by itself after
  // a network error; an answer other than 200 (the session ended: logout
  // elsewhere, a removed token, a restarted daemon) closes it for good, so
  // the page asks whether it is still logged in, and shows the login form
  // if not, or connects again a little later.
  function connect() {
    const stream = new EventSource("/web/api/stream");
    stream.addEventListener("snapshot", (event) => {
      live.textContent = "live";
      live.className = "live on";
      try {
        show(JSON.parse(event.data));
      } catch (error) {
        problem("a snapshot could not be read: " + error);
      }
    });
    stream.addEventListener("error", async () => {
      live.textContent = "reconnecting…";
      live.className = "live";
      if (stream.readyState !== EventSource.CLOSED) return;
      try {
        const answer = await fetch("/web/api/snapshot", { credentials: "same-origin" });
        if (answer.status === 401) {
          window.location.assign("/");
          return;
        }
      } catch (error) {
        // The daemon is away: try again below.
      }
      window.setTimeout(connect, 2000);
    });
  }
  connect();
})();
