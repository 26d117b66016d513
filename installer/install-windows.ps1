# Install IAD-GPT Desktop for the current user on Windows, from the checkout this script lives in.
#
#   powershell -ExecutionPolicy Bypass -File installer\install-windows.ps1 [-Prefix DIR] [-DataDir DIR]
#              [-Python "py -3.11"] [-TorchIndex URL] [-Uninstall]
#
# Creates a virtual environment under -Prefix, installs torch (the CUDA build when nvidia-smi works,
# else the CPU build), installs the project (non-editable), adds Start-menu shortcuts and creates the
# data folder. See installer\README.md.
[CmdletBinding()]
param(
    [string]$Prefix = (Join-Path $env:LOCALAPPDATA "Programs\IAD-GPT Desktop"),
    [string]$DataDir = "",
    [string]$Python = "py -3.11",
    [string]$TorchIndex = "",
    [switch]$Uninstall
)
$ErrorActionPreference = "Stop"

$Src = Split-Path -Parent $PSScriptRoot
$Venv = Join-Path $Prefix "venv"
$StartMenu = Join-Path ([Environment]::GetFolderPath("Programs")) "IAD-GPT Desktop"
if (-not $DataDir) {
    $DataDir = if ($env:IADGPT_DESKTOP_DATA) { $env:IADGPT_DESKTOP_DATA } else { Join-Path $env:LOCALAPPDATA "iadgpt-desktop" }
}

function Invoke-Checked([string]$Exe, [string[]]$Arguments) {
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { throw "command failed ($LASTEXITCODE): $Exe $($Arguments -join ' ')" }
}

if ($Uninstall) {
    if (Test-Path $StartMenu) { Remove-Item -Recurse -Force $StartMenu; Write-Host "removed $StartMenu" }
    if (Test-Path $Prefix) { Remove-Item -Recurse -Force $Prefix; Write-Host "removed $Prefix" }
    Write-Host "IAD-GPT Desktop uninstalled. The data folder $DataDir and the settings were kept."
    exit 0
}

# --- Python 3.11 and the virtual environment ------------------------------------------------
$PyParts = $Python.Split(" ", [StringSplitOptions]::RemoveEmptyEntries)
$PyExe = $PyParts[0]
$PyArgs = @($PyParts | Select-Object -Skip 1)
$Version = & $PyExe @PyArgs -c "import platform; print(platform.python_version())"
if ($LASTEXITCODE -ne 0 -or -not $Version.StartsWith("3.11.")) {
    throw "IAD-GPT needs Python 3.11 (found '$Version' from '$Python'); install it from python.org and pass -Python"
}
New-Item -ItemType Directory -Force -Path $Prefix | Out-Null
$VenvPy = Join-Path $Venv "Scripts\python.exe"
if (-not (Test-Path $VenvPy)) { Invoke-Checked $PyExe ($PyArgs + @("-m", "venv", $Venv)) }
Invoke-Checked $VenvPy @("-m", "pip", "install", "-q", "--upgrade", "pip")

# --- torch: CUDA build with a working NVIDIA driver, else the CPU build ----------------------
# torch and torchvision must come together in one command (matching builds); pins from pyproject.toml.
$Pyproject = Get-Content -Raw (Join-Path $Src "pyproject.toml")
$TorchPin = if ($Pyproject -match '"(torch==[^"]+)"') { $Matches[1] } else { "torch==2.14.1" }
$VisionPin = if ($Pyproject -match '"(torchvision==[^"]+)"') { $Matches[1] } else { "torchvision==0.29.1" }
$HasGpu = $false
if (Get-Command nvidia-smi -ErrorAction SilentlyContinue) {
    & nvidia-smi -L *> $null
    $HasGpu = ($LASTEXITCODE -eq 0)
}
if (-not $TorchIndex) {
    # On Windows the PyPI wheels are CPU-only; the CUDA build comes from PyTorch's own index.
    if ($HasGpu) { $TorchIndex = "https://download.pytorch.org/whl/cu130" }
}
$TorchArgs = @("-m", "pip", "install", "-q", $TorchPin, $VisionPin)
if ($TorchIndex) { $TorchArgs += @("--index-url", $TorchIndex) }
if ($HasGpu) { Write-Host "NVIDIA GPU found: installing the CUDA build of $TorchPin" }
else { Write-Host "no working nvidia-smi: installing the CPU build of $TorchPin" }
Invoke-Checked $VenvPy $TorchArgs

# --- the project (non-editable) ----------------------------------------------------------------
Write-Host "installing IAD-GPT Desktop from $Src into $Venv"
Invoke-Checked $VenvPy @("-m", "pip", "install", "-q", "--upgrade", $Src)

# --- data folder and Start-menu shortcuts ------------------------------------------------------
New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
New-Item -ItemType Directory -Force -Path $StartMenu | Out-Null
$Icon = Join-Path $Prefix "iadgpt-desktop.ico"
if (Test-Path (Join-Path $Src "resources\icons\iadgpt-desktop.ico")) {
    Copy-Item -Force (Join-Path $Src "resources\icons\iadgpt-desktop.ico") $Icon
} else {
    $Icon = $null  # Windows shortcuts need .ico/.exe icons; the executable's own icon is used then
}
$Shell = New-Object -ComObject WScript.Shell
$Shortcut = $Shell.CreateShortcut((Join-Path $StartMenu "IAD-GPT Desktop.lnk"))
$Shortcut.TargetPath = Join-Path $Venv "Scripts\iadgpt-desktop.exe"
$Shortcut.Arguments = "--data-dir `"$DataDir`""
$Shortcut.WorkingDirectory = $DataDir
$Shortcut.Description = "Industrial visual anomaly detection with the IAD-GPT model"
if ($Icon) { $Shortcut.IconLocation = $Icon }
$Shortcut.Save()
$Doctor = $Shell.CreateShortcut((Join-Path $StartMenu "IAD-GPT doctor.lnk"))
$Doctor.TargetPath = "$env:SystemRoot\System32\cmd.exe"
$Doctor.Arguments = "/k `"`"$(Join-Path $Venv 'Scripts\iadgpt.exe')`" doctor`""
$Doctor.WorkingDirectory = $DataDir
$Doctor.Save()

Write-Host ""
Write-Host "IAD-GPT Desktop is installed:"
Write-Host "  program:      $Venv"
Write-Host "  start menu:   $StartMenu"
Write-Host "  command line: $(Join-Path $Venv 'Scripts\iadgpt.exe')"
Write-Host "  data folder:  $DataDir"
Write-Host "  uninstall:    powershell -ExecutionPolicy Bypass -File `"$PSCommandPath`" -Uninstall -Prefix `"$Prefix`""
