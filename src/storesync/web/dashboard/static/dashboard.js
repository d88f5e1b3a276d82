// storesync operator dashboard: confirmations for actions and an optional auto-refresh.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
document.addEventListener("DOMContentLoaded", () => {
  const box = document.querySelector("input[data-autorefresh]");
  if (!box) return;
  const key = "storesync.dashboard.autorefresh";
  const seconds = Number(box.getAttribute("data-autorefresh")) || 10;
  let timer = null;
  const apply = () => {
    if (timer) { clearTimeout(timer); timer = null; }
    if (box.checked) timer = setTimeout(() => window.location.reload(), seconds * 1000);
  };
  box.checked = window.localStorage.getItem(key) === "on";
  box.addEventListener("change", () => { window.localStorage.setItem(key, box.checked ? "on" : "off"); apply(); });
  apply();
});
