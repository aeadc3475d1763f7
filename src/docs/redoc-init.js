// ReDoc for Jjongal's REST facade, from the document the service generates.
Redoc.init("/openapi.json", { hideDownloadButton: false, expandResponses: "200,201,202" }, document.getElementById("redoc"));
