// Filters the example table as the reader types. Reads rows as text only; never inserts markup.
(function () {
  var input = document.getElementById("example-filter");
  if (!input) {
    return;
  }
  input.addEventListener("input", function () {
    var needle = input.value.toLowerCase();
    var rows = document.querySelectorAll("#examples-table tbody tr");
    for (var i = 0; i < rows.length; i++) {
      rows[i].hidden = needle !== "" && rows[i].textContent.toLowerCase().indexOf(needle) === -1;
    }
  });
})();
